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
