"""Policy checks on deploy/terraform (python-hcl2). Each check passes on the real tree and is shown to catch a
deliberately broken copy, so none of them can pass vacuously."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import tf_policy

pytestmark = pytest.mark.unit

TF_ROOT = Path(__file__).resolve().parents[2] / "deploy" / "terraform"
Check = Callable[[Path], list[str]]


def broken_copy(tmp_path: Path, rel: str, pattern: str, replacement: str) -> Path:
    """A copy of deploy/terraform with one regex substitution in ``rel``; fails if the pattern does not match."""
    root = tmp_path / "terraform"
    shutil.copytree(TF_ROOT, root, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    target = root / rel
    text = target.read_text()
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.S)
    assert count == 1, f"broken-copy pattern {pattern!r} did not match {rel}: the test is stale"
    target.write_text(new)
    return root


def test_every_file_parses() -> None:
    files = tf_policy.tf_files(TF_ROOT)
    assert len(files) >= 20
    for f in files:
        assert isinstance(tf_policy.parse(f), dict)


@pytest.mark.parametrize(
    "check",
    [
        tf_policy.check_no_primitive_roles_or_public_members,
        tf_policy.check_subscriptions,
        tf_policy.check_buckets,
        tf_policy.check_tables_partitioned,
        tf_policy.check_descriptions,
        tf_policy.check_service_account_grants,
        tf_policy.check_storage_roles,
        tf_policy.check_staging_lifecycle,
        tf_policy.check_lifecycle_spares_committed_data,
        tf_policy.check_no_bucket_retention_policy,
        tf_policy.check_containers_set_command,
    ],
)
def test_the_real_configuration_complies(check: Check) -> None:
    assert check(TF_ROOT) == []


BREAKS: list[tuple[str, Check, str, str, str]] = [
    (
        "editor-role",
        tf_policy.check_no_primitive_roles_or_public_members,
        "bigquery.tf",
        r'"roles/bigquery\.dataEditor"',
        '"roles/editor"',
    ),
    (
        "owner-role",
        tf_policy.check_no_primitive_roles_or_public_members,
        "modules/tier/main.tf",
        r'role    = "roles/pubsub\.publisher"',
        'role    = "roles/owner"',
    ),
    (
        "all-users",
        tf_policy.check_no_primitive_roles_or_public_members,
        "storage.tf",
        r'member = "serviceAccount:\$\{module\.tier\[each\.key\]\.replicator_service_account\}"',
        'member = "allUsers"',
    ),
    (
        "all-authenticated-users",
        tf_policy.check_no_primitive_roles_or_public_members,
        "modules/tier/main.tf",
        r"member  = each\.value",
        'member  = "allAuthenticatedUsers"',
    ),
    (
        "no-exactly-once",
        tf_policy.check_subscriptions,
        "modules/tier/main.tf",
        r"(enable_exactly_once_delivery) = true",
        r"\1 = false",
    ),
    (
        "no-dead-letter-policy",
        tf_policy.check_subscriptions,
        "modules/tier/main.tf",
        r"\n  dead_letter_policy \{.*?\n  \}\n",
        "\n",
    ),
    (
        "no-uniform-access",
        tf_policy.check_buckets,
        "storage.tf",
        r"uniform_bucket_level_access = true",
        "uniform_bucket_level_access = false",
    ),
    (
        "public-access-inherited",
        tf_policy.check_buckets,
        "storage.tf",
        r'public_access_prevention    = "enforced"',
        'public_access_prevention    = "inherited"',
    ),
    (
        "committed-table-unpartitioned",
        tf_policy.check_tables_partitioned,
        "modules/bigquery_category/main.tf",
        r"\n  time_partitioning \{.*?\n  \}\n",
        "\n",
    ),
    (
        "fresh-table-unpartitioned",
        tf_policy.check_tables_partitioned,
        "modules/bigquery_fresh/main.tf",
        r"\n  time_partitioning \{.*?\n  \}\n",
        "\n",
    ),
    (
        "variable-without-description",
        tf_policy.check_descriptions,
        "variables.tf",
        r'(variable "staging_retention_days" \{)\n  description = "[^"]*"\n',
        r"\1\n",
    ),
    (
        "output-without-description",
        tf_policy.check_descriptions,
        "modules/tier/outputs.tf",
        r'(output "subscription" \{)\n  description = "[^"]*"\n',
        r"\1\n",
    ),
    (
        "object-admin-on-the-bucket",
        tf_policy.check_storage_roles,
        "storage.tf",
        r"role   = google_project_iam_custom_role\.landing_objects\.name",
        'role   = "roles/storage.objectAdmin"',
    ),
    (
        "landing-role-can-update",
        tf_policy.check_storage_roles,
        "storage.tf",
        r'"storage\.objects\.list",\n',
        '"storage.objects.list",\n    "storage.objects.update",\n',
    ),
    (
        "landing-role-cannot-delete",
        tf_policy.check_storage_roles,
        "storage.tf",
        r'    "storage\.objects\.delete",\n',
        "",
    ),
    (
        "staging-rule-fixed-age",
        tf_policy.check_staging_lifecycle,
        "storage.tf",
        r"age            = var\.staging_retention_days",
        "age            = 7",
    ),
    (
        "staging-rule-unchecked",
        tf_policy.check_staging_lifecycle,
        "storage.tf",
        r"\n  lifecycle \{\n    precondition \{.*?\n    \}\n  \}\n",
        "\n",
    ),
    (
        "staging-default-a-week",
        tf_policy.check_staging_lifecycle,
        "variables.tf",
        r'(variable "staging_retention_days" \{.*?default     = )30',
        r"\g<1>7",
    ),
    (
        "lifecycle-deletes-committed-data",
        tf_policy.check_lifecycle_spares_committed_data,
        "storage.tf",
        r'matches_prefix = \["bq/fresh/"\]',
        'matches_prefix = ["bq/fresh/", "logs/"]',
    ),
    (
        "fresh-files-expire-inside-the-backfill",
        tf_policy.check_lifecycle_spares_committed_data,
        "storage.tf",
        r"age            = 10\n",
        "age            = 3\n",
    ),
    (
        "bucket-retention-policy",
        tf_policy.check_no_bucket_retention_policy,
        "storage.tf",
        r"(  lifecycle_rule \{)",
        "  retention_policy {\n    retention_period = 86400\n  }\n\n\\1",
    ),
    (
        "bucket-retention-variable-accepted",
        tf_policy.check_no_bucket_retention_policy,
        "variables.tf",
        r"condition     = var\.bucket_retention_period_seconds == null",
        "condition     = var.bucket_retention_period_seconds == null || var.bucket_retention_period_seconds > 0",
    ),
    (
        "container-args-without-command",
        tf_policy.check_containers_set_command,
        "modules/replicator_gke/main.tf",
        r"          command           = slice\(var\.loader_command, 0, 1\)\n",
        "",
    ),
    (
        "example-output-empty-description",
        tf_policy.check_descriptions,
        "examples/prod/main.tf",
        r'(output "logpipe" \{)\n  description = "[^"]*"\n',
        '\\1\n  description = ""\n',
    ),
]


@pytest.mark.parametrize(
    ("check", "rel", "pattern", "replacement"), [b[1:] for b in BREAKS], ids=[b[0] for b in BREAKS]
)
def test_the_check_catches_a_broken_copy(
    tmp_path: Path, check: Check, rel: str, pattern: str, replacement: str
) -> None:
    root = broken_copy(tmp_path, rel, pattern, replacement)
    problems = check(root)
    assert problems, "the check did not notice the deliberate break"
    assert any(rel in p or "no google_" in p for p in problems), problems


#: Breaks of the per-service-account grants, with a phrase the report must contain (a missing grant names no file).
GRANT_BREAKS: list[tuple[str, str, str, str, str]] = [
    (
        "replicator-cannot-read-its-subscription",
        "modules/tier/main.tf",
        r'\nresource "google_pubsub_subscription_iam_member" "replicator_viewer" \{.*?\n\}\n',
        "\n",
        "the replicator service account lacks 'roles/pubsub.viewer' on google_pubsub_subscription.main",
    ),
    (
        "replicator-viewer-on-the-wrong-subscription",
        "modules/tier/main.tf",
        r'("replicator_viewer" \{.*?subscription = google_pubsub_subscription\.)main',
        r"\1dead_letter",
        "granted 'roles/pubsub.viewer' on google_pubsub_subscription.dead_letter",
    ),
    (
        "replicator-gets-bigquery-data",
        "bigquery.tf",
        r"(\"roles/bigquery\.dataEditor\"\n  member     = .*?)loader_service_account",
        r"\1replicator_service_account",
        "the replicator service account is granted 'roles/bigquery.dataEditor'",
    ),
    (
        "loader-cannot-run-jobs",
        "bigquery.tf",
        r"(\"roles/bigquery\.jobUser\"\n  member  = .*?)loader_service_account",
        r"\1frontend_service_account",
        "the loader service account lacks 'roles/bigquery.jobUser'",
    ),
    (
        "loader-gets-pubsub",
        "modules/tier/main.tf",
        r"(\"replicator_subscriber\" \{.*?member       = local\.)replicator_member",
        r"\1loader_member",
        "the loader service account is granted 'roles/pubsub.subscriber'",
    ),
    (
        "replicator-without-bucket-access",
        "storage.tf",
        r'\nresource "google_storage_bucket_iam_member" "replicator_objects" \{.*?\n\}\n',
        "\n",
        "the replicator service account lacks 'google_project_iam_custom_role.landing_objects'",
    ),
]


@pytest.mark.parametrize(
    ("rel", "pattern", "replacement", "expect"), [b[1:] for b in GRANT_BREAKS], ids=[b[0] for b in GRANT_BREAKS]
)
def test_the_grants_check_catches_a_broken_copy(
    tmp_path: Path, rel: str, pattern: str, replacement: str, expect: str
) -> None:
    problems = tf_policy.check_service_account_grants(broken_copy(tmp_path, rel, pattern, replacement))
    assert any(expect in p for p in problems), problems
