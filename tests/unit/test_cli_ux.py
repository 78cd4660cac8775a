"""The `logpipe` CLI answers bad input and missing setup with one clear line, its help is readable at 80 columns,
and `logpipe demo` leaves no process behind when it is stopped by a signal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from typer.testing import CliRunner

from service.cli import app

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_query_without_credentials_says_how_to_set_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    from service.cli import main

    def no_credentials(*args: Any, **kwargs: Any) -> Any:
        raise DefaultCredentialsError("Your default credentials were not found.")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    monkeypatch.delenv("BIGQUERY_EMULATOR_HOST", raising=False)
    monkeypatch.setattr(sys, "argv", ["logpipe", "query", "SELECT 1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "BIGQUERY_EMULATOR_HOST" in err and "logpipe env --state-dir" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["replicate"], ["local"], ["send"], ["bench", "ingest"], ["bench", "e2e"]])
def test_help_at_80_columns_is_not_truncated_and_shows_no_flag_types(command: list[str]) -> None:
    res = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert res.exit_code == 0, res.output
    assert "…" not in res.output
    assert "<bool>" not in res.output
    assert max(len(line) for line in res.output.splitlines()) <= 80
    if command == ["replicate"]:
        assert "--lease-extension-seconds" in res.output
    if command == ["local"]:
        assert "deploy/terraform/catalog.yaml" in res.output


def test_demo_refuses_a_non_positive_event_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import service.demo.demo

    started: list[int] = []
    monkeypatch.setattr(service.demo.demo, "run", lambda state_dir, events, *rest: started.append(events))
    res = CliRunner().invoke(app, ["demo", "--events", "-5"])
    assert res.exit_code == 2
    assert "--events" in res.output and started == []


@pytest.mark.parametrize("command", ["e2e", "soak"])
def test_bench_commands_take_out_dir_and_still_accept_out(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import service.demo.bench_e2e
    import service.demo.soak

    seen: list[Path] = []

    def fake_e2e(rate: float, duration: float, burst: int, out: Path, *rest: Any) -> None:
        seen.append(out)

    def fake_soak(minutes: float, rate: float | None, out: Path, *rest: Any) -> bool:
        seen.append(out)
        return True

    monkeypatch.setattr(service.demo.bench_e2e, "run", fake_e2e)
    monkeypatch.setattr(service.demo.soak, "run", fake_soak)
    for flag in ("--out-dir", "--out"):
        res = CliRunner().invoke(app, ["bench", command, flag, f"x{flag}"])
        assert res.exit_code == 0, res.output
    assert seen == [Path("x--out-dir"), Path("x--out")]
    shown = CliRunner().invoke(app, ["bench", command, "--help"]).output
    assert "--out-dir" in shown and "--out " not in shown


# The demo with its pipeline replaced by one that starts `sleep 60` children through service.local.procs (the
# helper the real pipeline uses): one child the pipeline records and stops on exit, and one started but never
# recorded (a signal can arrive between the two). The send step blocks, standing for a long demo run.
DEMO_UNDER_SIGNAL = textwrap.dedent(
    """
    import sys, time
    from service.demo import demo
    from service.local import procs

    class FakePipeline:
        def __init__(self, config):
            self.logs = config.state_dir / "logs"
            self.endpoints = object()
            self.ingest_targets = ["127.0.0.1:1"]
            self.children = []

        def __enter__(self):
            self.children.append(procs.start(procs.ProcessSpec("recorded", ["sleep", "60"]), self.logs))
            stray = procs.start(procs.ProcessSpec("stray", ["sleep", "60"]), self.logs)
            print("pids", self.children[0].pid, stray.pid, flush=True)
            return self

        def __exit__(self, *exc):
            procs.stop(self.children, 5.0)

    def blocked_send(*args, **kwargs):
        print("sending", flush=True)
        time.sleep(60)

    demo.Pipeline = FakePipeline
    demo._send = blocked_send
    sys.argv = ["logpipe", "demo", "--events", "1", "--state-dir", sys.argv[1]]
    from service.cli import main
    main()
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_stopped_by_a_signal_leaves_no_child_behind(tmp_path: Path, sig: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", DEMO_UNDER_SIGNAL, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the demo's own output, then the children's pids, then the (blocked) send
            if line.startswith("pids "):
                pids = [int(p) for p in line.split()[1:]]
            if line.startswith("sending"):
                break
        assert len(pids) == 2 and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 128 + sig, err
        assert f"stopped by {sig.name}" in err and "Traceback" not in err
        deadline = time.monotonic() + 5
        while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in pids if not _gone(p)] == []
    finally:
        for pid in [proc.pid, *pids]:  # whatever happened, nothing this test started survives it
            if not _gone(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)
