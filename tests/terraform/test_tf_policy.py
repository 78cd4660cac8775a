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
    ],
)
def test_the_real_configuration_complies(check: Check) -> None:
    assert check(TF_ROOT) == []


BREAKS: list[tuple[str, Check, str, str, str]] = [
    (
        "editor-role",
        tf_policy.check_no_primitive_roles_or_public_members,
        "storage.tf",
        r'"roles/storage\.objectAdmin"',
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
