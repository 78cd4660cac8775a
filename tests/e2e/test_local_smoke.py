"""`logpipe smoke` (what `make demo` ran before the end-to-end demo): it passes and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from service.local.endpoints import Endpoints
from service.local.procs import is_same_process

pytestmark = pytest.mark.e2e


def _processes_under(state: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions ``state`` (the emulators all get a path under it)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and str(state) in " ".join(proc.info["cmdline"] or ()):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_smoke_check_passes_and_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", "smoke", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for step in ("pubsub: pulled and acked", "answered 412 and kept the original", "query counted 3 distinct"):
        assert step in out.stdout
    assert "smoke check passed" in out.stdout
    assert _processes_under(state) == []


def test_smoke_check_stops_the_stack_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "smoke", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (state / "endpoints.json").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert (state / "endpoints.json").exists(), "the smoke-check stack never became ready"
        children = Endpoints.load(state).processes
        assert {"pubsub", "gcs", "bigquery"} <= {c.name for c in children}
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while any(is_same_process(c.pid, c.create_time) for c in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(is_same_process(c.pid, c.create_time) for c in children)
        assert _processes_under(state) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        from service.local.launcher import clean_stale

        clean_stale(state, grace_s=1.0)
