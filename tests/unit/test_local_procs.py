"""Process management of the local cloud: process groups, readiness, leftovers of a killed launcher."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import psutil
import pytest

from service.local import procs
from service.local.errors import StackBusy, StartupFailed
from service.local.launcher import LEDGER, clean_stale

pytestmark = pytest.mark.unit

# A parent that spawns a grandchild and ignores SIGTERM itself, like a stubborn wrapper script.
_STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(300)\n"
)


def _grandchild_pid(log: Path, timeout_s: float = 10.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = [ln for ln in log.read_text().splitlines() if ln.strip().isdigit()]
        if lines:
            return int(lines[-1])
        time.sleep(0.05)
    raise AssertionError("grandchild pid never printed")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_kills_the_whole_group_and_escalates_to_sigkill(tmp_path: Path) -> None:
    child = procs.start(procs.ProcessSpec("stubborn", [sys.executable, "-c", _STUBBORN]), tmp_path)
    grandchild = _grandchild_pid(child.log)
    assert os.getpgid(grandchild) == child.pid
    started = time.monotonic()
    procs.stop([child], grace_s=0.5)
    assert time.monotonic() - started < 7
    assert child.popen.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)
    assert not procs.group_alive(child.pid)


def test_wait_ready_names_a_child_that_exits(tmp_path: Path) -> None:
    spec = procs.ProcessSpec("crasher", [sys.executable, "-c", "raise SystemExit(3)"], ready=lambda: False)
    child = procs.start(spec, tmp_path)
    with pytest.raises(StartupFailed) as exc:
        procs.wait_ready([child], timeout_s=10)
    assert exc.value.name == "crasher"
    assert "exited with code 3" in str(exc.value)
    assert str(tmp_path / "crasher.log") in str(exc.value)


def test_wait_ready_times_out_with_the_log_path(tmp_path: Path) -> None:
    spec = procs.ProcessSpec("mute", [sys.executable, "-c", "import time; time.sleep(60)"], ready=lambda: False)
    child = procs.start(spec, tmp_path)
    try:
        with pytest.raises(StartupFailed, match=r"mute failed to start: did not answer within 1 s \(log: "):
            procs.wait_ready([child], timeout_s=1)
    finally:
        procs.stop([child], grace_s=1)


def test_wait_ready_polls_until_the_check_passes(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    script = f"import pathlib, time; time.sleep(0.3); pathlib.Path({str(flag)!r}).touch(); time.sleep(60)"
    child = procs.start(procs.ProcessSpec("slow", [sys.executable, "-c", script], ready=flag.exists), tmp_path)
    try:
        procs.wait_ready([child], timeout_s=10)
        assert flag.exists()
    finally:
        procs.stop([child], grace_s=1)


def test_start_reports_a_missing_executable(tmp_path: Path) -> None:
    with pytest.raises(StartupFailed, match="cannot execute /nonexistent/bin"):
        procs.start(procs.ProcessSpec("ghost", ["/nonexistent/bin"]), tmp_path)


def test_env_overrides_and_removals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "leaked:1")
    script = "import os; print(os.environ.get('PUBSUB_EMULATOR_HOST'), os.environ.get('X_SET'))"
    env: dict[str, str | None] = {"PUBSUB_EMULATOR_HOST": None, "X_SET": "yes"}
    child = procs.start(procs.ProcessSpec("envy", [sys.executable, "-c", script], env=env), tmp_path)
    child.popen.wait(timeout=10)
    assert "None yes" in child.log.read_text()


def test_is_same_process_checks_the_start_time() -> None:
    me = psutil.Process()
    assert procs.is_same_process(me.pid, me.create_time())
    assert not procs.is_same_process(me.pid, me.create_time() - 100)


def _ledger(state: Path, launcher: dict[str, object], children: list[procs.Running]) -> None:
    state.joinpath(LEDGER).write_text(
        json.dumps({"launcher": launcher, "children": [asdict(c.info()) for c in children]})
    )


def test_clean_stale_kills_leftovers_of_a_dead_launcher(tmp_path: Path) -> None:
    leftover = procs.start(procs.ProcessSpec("leftover", [sys.executable, "-c", _STUBBORN]), tmp_path / "logs")
    grandchild = _grandchild_pid(leftover.log)
    # A launcher that no longer exists: a real pid with a start time that does not match.
    _ledger(tmp_path, {"pid": os.getpid(), "create_time": 1.0}, [leftover])
    (tmp_path / "endpoints.json").write_text("{}")
    killed = clean_stale(tmp_path, grace_s=0.5)
    leftover.popen.wait(timeout=10)
    assert killed == [leftover.pid]
    deadline = time.monotonic() + 5
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(grandchild)
    assert not (tmp_path / LEDGER).exists() and not (tmp_path / "endpoints.json").exists()


def test_clean_stale_spares_a_reused_pid(tmp_path: Path) -> None:
    bystander = procs.start(
        procs.ProcessSpec("bystander", [sys.executable, "-c", "import time; time.sleep(60)"]), tmp_path
    )
    try:
        record = asdict(bystander.info()) | {"create_time": bystander.create_time - 50}
        tmp_path.joinpath(LEDGER).write_text(json.dumps({"launcher": {}, "children": [record]}))
        assert clean_stale(tmp_path, grace_s=0.5) == []
        assert bystander.popen.poll() is None
    finally:
        procs.stop([bystander], grace_s=1)


def test_clean_stale_refuses_while_the_launcher_lives(tmp_path: Path) -> None:
    other = procs.start(procs.ProcessSpec("launcher", [sys.executable, "-c", "import time; time.sleep(60)"]), tmp_path)
    try:
        _ledger(tmp_path, {"pid": other.pid, "create_time": other.create_time}, [])
        with pytest.raises(StackBusy, match=f"launcher pid {other.pid}"):
            clean_stale(tmp_path, grace_s=0.5)
    finally:
        procs.stop([other], grace_s=1)


def test_free_ports_are_distinct_and_bindable() -> None:
    import socket

    ports = procs.free_ports(40)
    assert len(set(ports)) == 40
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
