"""Front-end and replicator children: skipped with a note while their command is missing, specs otherwise."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from service.local.children import plan_apps, registered_commands
from service.local.config import LocalConfig, Ports
from service.local.endpoints import Endpoints

pytestmark = pytest.mark.unit


def _endpoints(state: Path) -> Endpoints:
    return Endpoints(
        project="p",
        pubsub_host="127.0.0.1:1",
        gcs_url="http://127.0.0.1:2",
        bigquery_url="http://127.0.0.1:3",
        bigquery_grpc="127.0.0.1:4",
        bucket="b",
        dataset="d",
        catalog="/c.yaml",
        state_dir=str(state),
        launcher_pid=1,
        launcher_create_time=0.0,
    )


def test_missing_commands_are_skipped_with_a_note(tmp_path: Path) -> None:
    plan = plan_apps(LocalConfig(state_dir=tmp_path, frontends=2, replicators=1), _endpoints(tmp_path), set())
    assert plan.specs == () and plan.ingest_targets == ()
    assert plan.notes == (
        "skipped 2 front-end(s): `logpipe serve` does not exist yet",
        "skipped 1 replicator(s): `logpipe replicate` does not exist yet",
        "skipped 1 BigQuery loader(s): `logpipe load` does not exist",
    )


def test_specs_when_commands_exist(tmp_path: Path) -> None:
    config = LocalConfig(state_dir=tmp_path, frontends=2, replicators=2, ports=Ports(frontend_base=41000))
    plan = plan_apps(config, _endpoints(tmp_path), {"serve", "replicate", "load"})
    assert plan.notes == ()
    assert plan.ingest_targets == ("127.0.0.1:41000", "127.0.0.1:41001")
    names = ["frontend-0", "frontend-1", "replicator-0", "replicator-1", "loader-0"]
    assert [s.name for s in plan.specs] == names
    assert list(plan.specs[4].argv[-1:]) == ["load"] and plan.specs[4].env["LOGPIPE_BUCKET"] == "b"
    fe = plan.specs[1]
    assert list(fe.argv[-9:]) == [
        "serve", "--host", "127.0.0.1", "--port", "41001", "--instance-id", "frontend-1",
        "--spool-dir", str((tmp_path / "spool" / "frontend-1").resolve()),
    ]  # fmt: skip
    assert fe.env["PUBSUB_EMULATOR_HOST"] == "127.0.0.1:1"
    assert fe.ready is not None and not fe.ready()  # nothing listens on 41001
    rep = plan.specs[3]
    assert list(rep.argv[-1:]) == ["replicate"]
    assert rep.env["LOGPIPE_WORKER_ID"] == "replicator-1" and rep.env["LOGPIPE_BUCKET"] == "b"


def test_replicator_is_ready_when_its_log_says_so_in_the_current_run(tmp_path: Path) -> None:
    config = replace(LocalConfig(state_dir=tmp_path, frontends=0, replicators=1, loaders=0))
    (spec,) = plan_apps(config, _endpoints(tmp_path), {"replicate"}).specs
    assert spec.ready is not None
    log = tmp_path / "logs" / "replicator-0.log"
    log.parent.mkdir()
    log.write_text("--- logpipe local: starting old\nreplicator ready tiers=core\n--- logpipe local: starting new\n")
    assert not spec.ready()
    with log.open("a") as f:
        f.write("replicator ready tiers=core,bulk\n")
    assert spec.ready()


def test_registered_commands_sees_the_cli() -> None:
    assert {"local", "env", "smoke", "demo", "categories"} <= registered_commands()
