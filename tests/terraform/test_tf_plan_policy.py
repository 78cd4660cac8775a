"""Policies that need Terraform's evaluation, checked on a real `terraform plan` through the fake providers (no cloud):
what the containers run and with which environment and identity, and the plan-time refusals of a staging lifecycle
that could delete acked events and of a bucket retention policy that would block logpipe's deletes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tf_harness

from service.catalog import load_catalog

pytestmark = pytest.mark.unit

DAY = 86_400
LONG_RETENTION_CATALOG = """
name_prefix: acme
dataset: acme_logs
tiers:
  - name: hot
    message_retention_seconds: 2678400
categories:
  - name: checkout
    tier: hot
"""


def plan(
    tf: tf_harness.FakeProviders, tmp_path: Path, **variables: object
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``terraform plan`` of the root module with ``variables``; the process, and ``show -json`` when it succeeded."""
    data_dir = tmp_path / "tf-data"
    tf.terraform(["get", "-no-color"], tf_harness.TERRAFORM_DIR, data_dir=data_dir)
    args = [
        "plan", "-no-color", "-input=false", "-refresh=false", "-lock=false", f"-out={tmp_path / 'plan.bin'}",
        "-var", "project_id=policy-proj-1", "-var", "region=europe-west1",
        "-var", "replicator_image=europe-docker.pkg.dev/policy-proj-1/logpipe/logpipe:0.1.0",
    ]  # fmt: skip
    for name, value in variables.items():
        args += ["-var", f"{name}={value}"]
    proc = tf.terraform(args, tf_harness.TERRAFORM_DIR, data_dir=data_dir, check=False)
    if proc.returncode != 0:
        return proc, {}
    shown = tf.terraform(["show", "-json", str(tmp_path / "plan.bin")], tf_harness.TERRAFORM_DIR, data_dir=data_dir)
    return proc, dict(json.loads(shown.stdout))


def errors(proc: subprocess.CompletedProcess[str]) -> str:
    """Terraform's diagnostics as one line: it wraps long messages and frames them with box characters."""
    return " ".join(proc.stderr.replace("\u2502", " ").split())


@pytest.fixture(scope="module")
def default_plan(fake_tf: tf_harness.FakeProviders, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    proc, doc = plan(fake_tf, tmp_path_factory.mktemp("default-plan"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return doc


def pod_specs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Deployment name -> its pod spec, from the plan."""
    return {
        rc["change"]["after"]["metadata"][0]["name"]: rc["change"]["after"]["spec"][0]["template"][0]["spec"][0]
        for rc in doc["resource_changes"]
        if rc["type"] == "kubernetes_deployment_v1"
    }


def test_containers_run_logpipe_as_command_with_json_logs(default_plan: dict[str, Any]) -> None:
    tiers = [t.name for t in load_catalog(tf_harness.TERRAFORM_DIR / "catalog.yaml").tiers]
    pods = pod_specs(default_plan)
    assert set(pods) == {f"logpipe-{kind}-{t}" for kind in ("replicator", "loader") for t in tiers}
    for t in tiers:
        for kind, subcommand in (("replicator", "replicate"), ("loader", "load")):
            pod = pods[f"logpipe-{kind}-{t}"]
            (container,) = pod["container"]
            # command replaces the image's ENTRYPOINT: the image only needs `logpipe` on PATH.
            assert container["command"] == ["logpipe"], kind
            assert container["args"][0] == subcommand and container["args"][-2:] == ["--tier", t], container["args"]
            env = {e["name"]: e["value"] for e in container["env"]}
            assert env["LOGPIPE_LOG_FORMAT"] == "json", kind  # severity in every line: the error metric counts ERRORs
            assert "LOGPIPE_TIER" not in env  # read by nothing; --tier says it
            # Each runs as its own Kubernetes service account, so as its own Google service account.
            assert pod["service_account_name"] == f"logpipe-{kind}-{t}"


def test_two_service_accounts_per_tier(default_plan: dict[str, Any]) -> None:
    ids = {rc["change"]["after"]["account_id"] for rc in default_plan["resource_changes"]
           if rc["type"] == "google_service_account"}  # fmt: skip
    tiers = [t.name for t in load_catalog(tf_harness.TERRAFORM_DIR / "catalog.yaml").tiers]
    assert ids == {"logpipe-frontend"} | {f"logpipe-{k}-{t}" for k in ("rep", "load") for t in tiers}


def test_landing_role_is_exactly_object_create_get_list_delete(default_plan: dict[str, Any]) -> None:
    (role,) = [rc["change"]["after"] for rc in default_plan["resource_changes"]
               if rc["type"] == "google_project_iam_custom_role"]  # fmt: skip
    assert sorted(role["permissions"]) == [
        "storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list",
    ]  # fmt: skip
    # Every bucket grant is that role (its name is known only after apply, so read the configuration's reference).
    grants = [r for r in default_plan["configuration"]["root_module"]["resources"]
              if r["type"] == "google_storage_bucket_iam_member"]  # fmt: skip
    assert {g["name"] for g in grants} == {"replicator_objects", "loader_objects"}
    for g in grants:
        assert "google_project_iam_custom_role.landing_objects" in g["expressions"]["role"]["references"], g


@pytest.mark.parametrize(
    ("days", "ok"),
    [(30, True), (8, True), (7, False), (1, False)],
    ids=["default", "just-enough", "message-retention", "one-day"],
)
def test_staging_must_outlive_the_longest_message_retention(
    fake_tf: tf_harness.FakeProviders, tmp_path: Path, days: int, ok: bool
) -> None:
    # The shipped catalog keeps core messages 7 days: 7 d + 1 h + 600 s lateness needs 8 days.
    proc, _ = plan(fake_tf, tmp_path, staging_retention_days=days)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    else:
        assert proc.returncode != 0
        assert f"staging_retention_days ({days})" in errors(proc), proc.stderr
        assert "whether or not finalization has committed them" in errors(proc), proc.stderr


def test_the_default_age_is_refused_for_a_31_day_retention(fake_tf: tf_harness.FakeProviders, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(LONG_RETENTION_CATALOG)
    assert load_catalog(catalog).tier("hot").message_retention_seconds == 31 * DAY
    proc, _ = plan(fake_tf, tmp_path, catalog_file=catalog)
    assert proc.returncode != 0 and "so at least 32 days" in errors(proc), proc.stderr
    proc, _ = plan(fake_tf, tmp_path, catalog_file=catalog, staging_retention_days=32)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_bucket_retention_policy_is_refused_with_the_reason(
    fake_tf: tf_harness.FakeProviders, tmp_path: Path
) -> None:
    proc, _ = plan(fake_tf, tmp_path, bucket_retention_period_seconds=30 * DAY)
    assert proc.returncode != 0
    assert "must be null" in errors(proc) and "fail with 403" in errors(proc), proc.stderr
