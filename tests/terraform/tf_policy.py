"""Static policy checks over deploy/terraform, parsed with python-hcl2 (no provider, no plan).

Each check takes the Terraform root directory and returns a list of violations (empty = compliant), one readable
line each. The tests run them on the real tree and on deliberately broken copies.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

_OPTIONS = SerializationOptions(with_comments=False, strip_string_quotes=True, explicit_blocks=False)
# Basic roles and public principals, as whole words (roles/bigquery.dataEditor is fine, roles/editor is not).
_FORBIDDEN = re.compile(r"\b(roles/owner|roles/editor|allUsers|allAuthenticatedUsers)\b")


def tf_files(root: Path) -> list[Path]:
    """Every .tf file of the module, its submodules and its examples (not .terraform caches)."""
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def parse(path: Path) -> dict[str, Any]:
    """One .tf file as a dict; blocks are lists of dicts, strings carry no quotes. Treat the result as read-only."""
    return _parse_text(path.read_text())


@functools.lru_cache(maxsize=256)
def _parse_text(text: str) -> dict[str, Any]:
    # Cached by content: lark parsing is slow, and broken copies share all but one file with the real tree.
    return dict(hcl2.loads(text, serialization_options=_OPTIONS))


def resources(root: Path, type_name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``file:type.name``, body) of every resource of ``type_name``."""
    for path in tf_files(root):
        for entry in parse(path).get("resource", []):
            for name, body in entry.get(type_name, {}).items():
                yield f"{path.relative_to(root)}:{type_name}.{name}", body


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _block(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    blocks = body.get(name)
    if isinstance(blocks, list) and blocks and isinstance(blocks[0], dict):
        return blocks[0]
    return None


def check_no_primitive_roles_or_public_members(root: Path) -> list[str]:
    """No roles/owner or roles/editor and no allUsers/allAuthenticatedUsers, in any value of any file."""
    problems = []
    for path in tf_files(root):
        for s in _strings(parse(path)):
            for bad in _FORBIDDEN.findall(s):
                problems.append(f"{path.relative_to(root)}: forbidden {bad!r} in {s!r}")
    return problems


def check_subscriptions(root: Path) -> list[str]:
    """Every subscription has exactly-once delivery; every one except a dead-letter topic's own subscription has a
    dead-letter policy (a DLQ of the DLQ would only move poison further; nothing consumes it automatically)."""
    problems = []
    for where, body in resources(root, "google_pubsub_subscription"):
        if body.get("enable_exactly_once_delivery") is not True:
            problems.append(f"{where}: enable_exactly_once_delivery is not true")
        reads_dead_letter_topic = "dead_letter" in str(body.get("topic", ""))
        policy = _block(body, "dead_letter_policy")
        if not reads_dead_letter_topic and (policy is None or not policy.get("dead_letter_topic")):
            problems.append(f"{where}: no dead_letter_policy with a dead_letter_topic")
    if not problems and not list(resources(root, "google_pubsub_subscription")):
        problems.append("no google_pubsub_subscription found (wrong directory?)")
    return problems


def check_buckets(root: Path) -> list[str]:
    """Every bucket enforces uniform bucket-level access and public access prevention."""
    problems = []
    found = False
    for where, body in resources(root, "google_storage_bucket"):
        found = True
        if body.get("uniform_bucket_level_access") is not True:
            problems.append(f"{where}: uniform_bucket_level_access is not true")
        if body.get("public_access_prevention") != "enforced":
            problems.append(f'{where}: public_access_prevention is not "enforced"')
    return problems if found else ["no google_storage_bucket found (wrong directory?)"]


def check_tables_partitioned(root: Path) -> list[str]:
    """Every BigQuery table is time-partitioned on a column."""
    problems = []
    found = False
    for where, body in resources(root, "google_bigquery_table"):
        found = True
        part = _block(body, "time_partitioning")
        if part is None or not part.get("type") or not part.get("field"):
            problems.append(f"{where}: no time_partitioning with type and field")
    return problems if found else ["no google_bigquery_table found (wrong directory?)"]


def check_descriptions(root: Path) -> list[str]:
    """Every variable and output, in every module and example, has a non-empty description."""
    problems = []
    for path in tf_files(root):
        doc = parse(path)
        for kind in ("variable", "output"):
            for entry in doc.get(kind, []):
                for name, body in entry.items():
                    if not str(body.get("description", "")).strip():
                        problems.append(f"{path.relative_to(root)}: {kind} {name!r} has no description")
    return problems


# --- Least privilege per service account ---------------------------------------------------------------------------
#: The landing bucket's custom role: what logpipe does with objects (replicator/store_gcs.py), nothing more.
LANDING_OBJECT_PERMISSIONS = frozenset(
    {"storage.objects.create", "storage.objects.get", "storage.objects.list", "storage.objects.delete"}
)
_LANDING_ROLE = "google_project_iam_custom_role.landing_objects"
#: Every grant each logpipe service account holds, as (IAM resource type, target, role). Targets and custom roles are
#: the Terraform addresses the HCL refers to. Taken from the code's API calls (docs/deploy.md, IAM table).
GRANTS: dict[str, frozenset[tuple[str, str, str]]] = {
    "replicator": frozenset(
        {
            # streaming pull, ack, modack
            ("google_pubsub_subscription_iam_member", "google_pubsub_subscription.main", "roles/pubsub.subscriber"),
            # get_subscription at start-up (replicator/worker.py): pubsub.subscriptions.get
            ("google_pubsub_subscription_iam_member", "google_pubsub_subscription.main", "roles/pubsub.viewer"),
            # poison envelopes (replicator/handler.py)
            ("google_pubsub_topic_iam_member", "google_pubsub_topic.dead_letter", "roles/pubsub.publisher"),
            # landing, finalization, orphan deletes
            ("google_storage_bucket_iam_member", "google_storage_bucket.landing", _LANDING_ROLE),
        }
    ),
    "loader": frozenset(
        {
            ("google_bigquery_dataset_iam_member", "google_bigquery_dataset.logs", "roles/bigquery.dataEditor"),
            ("google_project_iam_member", "var.project_id", "roles/bigquery.jobUser"),
            # reads staging/ and logs/ (load jobs read gs:// as the loader), writes and deletes bq/
            ("google_storage_bucket_iam_member", "google_storage_bucket.landing", _LANDING_ROLE),
        }
    ),
}
#: How a `member` expression names each service account (module output or the module's own local).
_MEMBER_OF = {
    "replicator": re.compile(r"\breplicator_(service_account|member)\b"),
    "loader": re.compile(r"\bloader_(service_account|member)\b"),
}
_TARGET_ATTR = {
    "google_pubsub_subscription_iam_member": "subscription",
    "google_pubsub_topic_iam_member": "topic",
    "google_storage_bucket_iam_member": "bucket",
    "google_bigquery_dataset_iam_member": "dataset_id",
    "google_project_iam_member": "project",
}
_ADDRESS = re.compile(r"\b(google_[a-z0-9_]+\.[a-z0-9_]+|var\.[a-z0-9_]+)")
_BROAD_STORAGE_ROLE = re.compile(r"\broles/storage\.(admin|objectAdmin|objectUser|legacy\w+)\b")


def _address(expr: Any) -> str:
    """``${google_pubsub_subscription.main.name}`` -> ``google_pubsub_subscription.main``; a literal stays as is."""
    match = _ADDRESS.search(str(expr))
    return match.group(1) if match else str(expr)


def _iam_members(root: Path) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, resource type, body) of every ``*_iam_member`` resource."""
    for path in tf_files(root):
        for entry in parse(path).get("resource", []):
            for type_name, named in entry.items():
                if type_name.endswith("_iam_member"):
                    for name, body in named.items():
                        yield f"{path.relative_to(root)}:{type_name}.{name}", type_name, body


def check_service_account_grants(root: Path) -> list[str]:
    """The replicator and loader service accounts hold exactly the grants of ``GRANTS``: none missing, none more."""
    found: dict[str, set[tuple[str, str, str]]] = {who: set() for who in GRANTS}
    problems = []
    for where, type_name, body in _iam_members(root):
        member = str(body.get("member", ""))
        for who, pattern in _MEMBER_OF.items():
            if not pattern.search(member):
                continue
            role = str(body.get("role", ""))
            grant = (type_name, _address(body.get(_TARGET_ATTR.get(type_name, ""), "")), _address(role))
            found[who].add(grant)
            if grant not in GRANTS[who]:
                problems.append(f"{where}: the {who} service account is granted {role!r} on {grant[1]}, not in GRANTS")
    for who, grants in GRANTS.items():
        for type_name, target, role in sorted(grants - found[who]):
            problems.append(f"the {who} service account lacks {role!r} on {target} ({type_name})")
    return problems


def check_storage_roles(root: Path) -> list[str]:
    """The landing bucket's custom role has exactly ``LANDING_OBJECT_PERMISSIONS``, and no predefined storage role that
    grants more (objectAdmin, admin, objectUser, legacy roles) appears anywhere."""
    problems = []
    roles = list(resources(root, "google_project_iam_custom_role"))
    if not any(where.endswith(":" + _LANDING_ROLE) for where, _ in roles):
        problems.append(f"no {_LANDING_ROLE} found")
    for where, body in roles:
        perms = set(body.get("permissions", []))
        if where.endswith(":" + _LANDING_ROLE) and perms != LANDING_OBJECT_PERMISSIONS:
            extra, missing = sorted(perms - LANDING_OBJECT_PERMISSIONS), sorted(LANDING_OBJECT_PERMISSIONS - perms)
            problems.append(f"{where}: permissions differ (extra {extra}, missing {missing})")
    for path in tf_files(root):
        for s in _strings(parse(path)):
            for bad in _BROAD_STORAGE_ROLE.findall(s):
                problems.append(f"{path.relative_to(root)}: broad storage role roles/storage.{bad} in {s!r}")
    return problems


# --- Landing bucket: deletes that logpipe relies on -----------------------------------------------------------------
def check_staging_lifecycle(root: Path) -> list[str]:
    """The staging/ Delete rule's age is ``var.staging_retention_days``, whose default is generous (>= 30 days), and a
    precondition on the bucket ties that age to the catalog's message retention (a plan test checks the arithmetic)."""
    problems = []
    buckets = list(resources(root, "google_storage_bucket"))
    for where, body in buckets:
        rules = [
            r for r in body.get("lifecycle_rule", [])
            if "staging/" in (_block(r, "condition") or {}).get("matches_prefix", [])
        ]  # fmt: skip
        if len(rules) != 1:
            problems.append(f"{where}: expected one lifecycle_rule for staging/, found {len(rules)}")
            continue
        if "var.staging_retention_days" not in str((_block(rules[0], "condition") or {}).get("age")):
            problems.append(f"{where}: the staging/ rule's age is not var.staging_retention_days")
        conditions = [
            str(p.get("condition", "")) for lc in body.get("lifecycle", []) for p in lc.get("precondition", [])
        ]
        if not any("var.staging_retention_days" in c and "staging_min_age_seconds" in c for c in conditions):
            problems.append(f"{where}: no precondition comparing staging_retention_days with staging_min_age_seconds")
    min_age = "".join(
        str(lc.get("staging_min_age_seconds", "")) for path in tf_files(root) for lc in parse(path).get("locals", [])
    )
    if "message_retention_seconds" not in min_age or "lateness" not in min_age:
        problems.append("local staging_min_age_seconds does not add message retention and lateness")
    default = _variable(root, "staging_retention_days").get("default")
    if not isinstance(default, int) or default < 30:
        problems.append(f"variables.tf: staging_retention_days defaults to {default!r}, not at least 30 days")
    return problems if buckets else ["no google_storage_bucket found (wrong directory?)"]


def check_lifecycle_spares_committed_data(root: Path) -> list[str]:
    """Only staging/, the loader's bq/fresh/ files and the finalization claims/ expire: no lifecycle rule may match
    logs/ (committed data and manifests, kept forever) or bq/committed/ (the loader's markers), nor have no prefix at
    all. The bq/fresh/ rule waits more than the loader's 192 h backfill window (at least 9 days)."""
    problems = []
    for where, body in resources(root, "google_storage_bucket"):
        fresh = []
        for r in body.get("lifecycle_rule", []):
            prefixes = (_block(r, "condition") or {}).get("matches_prefix", [])
            if not prefixes or any(not x.startswith(("staging/", "bq/fresh/", "claims/")) for x in prefixes):
                problems.append(f"{where}: a lifecycle rule matches {prefixes or 'every object'}")
            if "bq/fresh/" in prefixes:
                fresh.append(r)
        if len(fresh) != 1:
            problems.append(f"{where}: expected one lifecycle_rule for bq/fresh/, found {len(fresh)}")
        elif not isinstance(age := (_block(fresh[0], "condition") or {}).get("age"), int) or age < 9:
            problems.append(f"{where}: the bq/fresh/ rule's age {age!r} is within the loader's backfill window")
    return problems


def check_no_bucket_retention_policy(root: Path) -> list[str]:
    """No bucket has a retention policy (logpipe deletes young objects: the loader's bq/ bookkeeping, orphan data
    files), and bucket_retention_period_seconds, if declared, is refused unless null."""
    problems = []
    for where, body in resources(root, "google_storage_bucket"):
        dynamic = [name for d in body.get("dynamic", []) for name in d]
        if "retention_policy" in body or "retention_policy" in dynamic:
            problems.append(f"{where}: has a retention_policy block")
    var = _variable(root, "bucket_retention_period_seconds")
    if var and not any(
        str(v.get("condition")) == "${var.bucket_retention_period_seconds == null}" for v in var.get("validation", [])
    ):
        problems.append("variables.tf: bucket_retention_period_seconds is not refused unless null")
    return problems


def check_containers_set_command(root: Path) -> list[str]:
    """Every Deployment's containers set ``command`` as well as ``args``: with ``args`` only, the image's ENTRYPOINT
    would stay in front (an ENTRYPOINT of ``logpipe`` would run ``logpipe logpipe replicate``)."""
    problems = []
    found = False
    for where, body in resources(root, "kubernetes_deployment_v1"):
        found = True
        pod = _block(_block(_block(body, "spec") or {}, "template") or {}, "spec") or {}
        for c in pod.get("container", []):
            if not c.get("command"):
                problems.append(f"{where}: container {c.get('name')!r} sets no command")
    return problems if found else ["no kubernetes_deployment_v1 found (wrong directory?)"]


def _variable(root: Path, name: str) -> dict[str, Any]:
    """The root module's declaration of variable ``name`` ({} when there is none)."""
    for path in sorted(root.glob("*.tf")):
        for entry in parse(path).get("variable", []):
            if name in entry:
                return dict(entry[name])
    return {}
