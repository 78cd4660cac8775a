"""endpoints.json: round trip, atomic write, the environment of `logpipe env`, clear errors without a stack."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from service.cli import app
from service.local.endpoints import FILENAME, Endpoints, ProcessInfo
from service.local.errors import NoStackRunning

pytestmark = pytest.mark.unit


def _endpoints(state: Path, launcher: psutil.Process | None = None) -> Endpoints:
    me = launcher or psutil.Process()
    return Endpoints(
        project="p-local",
        pubsub_host="127.0.0.1:1001",
        gcs_url="http://127.0.0.1:1002",
        bigquery_url="http://127.0.0.1:1003",
        bigquery_grpc="127.0.0.1:1004",
        bucket="b-landing",
        dataset="ds",
        catalog="/cat.yaml",
        state_dir=str(state),
        launcher_pid=me.pid,
        launcher_create_time=me.create_time(),
        ingest_targets=("127.0.0.1:2001", "127.0.0.1:2002"),
        processes=(ProcessInfo("pubsub", 11, 1.5, "/l/pubsub.log"), ProcessInfo("gcs", 12, 1.5, "/l/gcs.log")),
    )


def test_round_trip(tmp_path: Path) -> None:
    ep = _endpoints(tmp_path)
    path = ep.write(tmp_path)
    assert path == tmp_path / FILENAME
    assert Endpoints.load(tmp_path) == ep
    assert ep.pids == {"pubsub": 11, "gcs": 12}
    assert json.loads(path.read_text())["pubsub_host"] == "127.0.0.1:1001"
    assert [p.name for p in tmp_path.iterdir()] == [FILENAME]  # no temporary file left behind


def test_env_points_everything_at_the_stack(tmp_path: Path) -> None:
    env = _endpoints(tmp_path).env()
    assert env["GOOGLE_CLOUD_PROJECT"] == "p-local"
    assert env["PUBSUB_EMULATOR_HOST"] == "127.0.0.1:1001"
    assert env["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:1002"
    assert env["BIGQUERY_EMULATOR_HOST"] == "http://127.0.0.1:1003"
    assert env["LOGPIPE_BIGQUERY_GRPC"] == "127.0.0.1:1004"
    assert env["LOGPIPE_BUCKET"] == "b-landing"
    assert env["LOGPIPE_DATASET"] == "ds"
    assert env["LOGPIPE_CATALOG"] == "/cat.yaml"
    assert env["LOGPIPE_INGEST_TARGET"] == "127.0.0.1:2001,127.0.0.1:2002"
    assert "LOGPIPE_INGEST_TARGET" not in replace(_endpoints(tmp_path), ingest_targets=()).env()


def test_load_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(NoStackRunning, match="start one with `logpipe local`"):
        Endpoints.load(tmp_path)
    (tmp_path / FILENAME).write_text("{not json")
    with pytest.raises(NoStackRunning, match=r"not a valid endpoints\.json"):
        Endpoints.load(tmp_path)
    (tmp_path / FILENAME).write_text(json.dumps({"version": 99}))
    with pytest.raises(NoStackRunning, match=r"unsupported endpoints\.json version 99"):
        Endpoints.load(tmp_path)


def test_load_live_refuses_a_file_whose_launcher_is_gone(tmp_path: Path) -> None:
    ep = _endpoints(tmp_path)
    ep.write(tmp_path)
    assert Endpoints.load_live(tmp_path) == ep
    replace(ep, launcher_create_time=ep.launcher_create_time - 1000).write(tmp_path)
    with pytest.raises(NoStackRunning, match=f"launcher pid {ep.launcher_pid} is gone"):
        Endpoints.load_live(tmp_path)


def test_env_command_prints_exports_that_a_shell_can_eval(tmp_path: Path) -> None:
    state = tmp_path / "state dir"
    state.mkdir()
    _endpoints(state).write(state)
    result = CliRunner().invoke(app, ["env", "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    import subprocess

    script = result.output + 'printf "%s|%s" "$LOGPIPE_BUCKET" "$LOGPIPE_STATE_DIR"'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env=dict(os.environ))
    assert out.stdout == f"b-landing|{state}"


def test_env_command_without_a_stack_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["env", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "error: no local stack in" in result.output


def test_cli_module_runs() -> None:
    import subprocess

    out = subprocess.run([sys.executable, "-m", "service.cli", "env", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "export" in out.stdout
