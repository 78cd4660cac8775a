"""Child processes as data: a ``ProcessSpec`` says how to start one and how to tell it is ready.

Contract:
  * Every child is started in its own session, so its pid is also its process-group id; ``stop`` signals the whole
    group, which takes grandchildren with it (the Pub/Sub emulator's wrapper script execs java, for instance).
  * ``stop`` sends SIGTERM, waits up to a grace period, then SIGKILLs what is left; it blocks until the group is gone.
  * Output goes to ``<logs_dir>/<name>.log`` (appended, so a restart keeps earlier runs' output).
  * Identity for "is this pid still ours?" is (pid, create_time): pids are reused, start times are not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from service.local.endpoints import ProcessInfo
from service.local.errors import Cancelled, StartupFailed

RUN_SEPARATOR = "--- logpipe local: starting "
"""Written to a child's log before each run, so readiness checks can look at the current run only."""

SETTLE_S = 0.5
"""How long a child without a readiness check must stay alive to count as started."""

ReadyCheck = Callable[[], bool]
"""Returns True once the child answers; must not raise, and should return within a few seconds."""


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one child.

    Attributes:
        name: Unique within a stack; names the log file and the entry in endpoints.json.
        argv: The command line.
        env: Variables set on top of the launcher's environment; a value of None removes the variable.
        ready: Polled until it returns True; None means "ready once it has stayed alive for ``SETTLE_S``".
        cwd: Working directory (default: the launcher's).
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str | None] = field(default_factory=dict)
    ready: ReadyCheck | None = None
    cwd: Path | None = None


@dataclass
class Running:
    """A started child. ``pid`` is also its process-group id."""

    spec: ProcessSpec
    popen: subprocess.Popen[bytes]
    log: Path
    create_time: float
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def info(self) -> ProcessInfo:
        """What endpoints.json and the ledger keep about this child."""
        return ProcessInfo(self.spec.name, self.pid, self.create_time, str(self.log))


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now.

    All sockets stay bound until every port is chosen, so the ports differ from each other; another process can
    still take one before the child binds it (the usual bind-to-0 race), which shows up as a child failing to start.
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port() -> int:
    """One free TCP port on 127.0.0.1 (see ``free_ports``)."""
    return free_ports(1)[0]


def start(spec: ProcessSpec, logs_dir: Path) -> Running:
    """Start ``spec`` in a new session with output to ``logs_dir/<name>.log``. Does not wait for readiness.

    Raises:
        StartupFailed: The executable could not be run at all.
    """
    logs_dir.mkdir(parents=True, exist_ok=True)
    log = logs_dir / f"{spec.name}.log"
    env = dict(os.environ)
    for key, value in spec.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    with log.open("ab") as out:
        out.write(f"\n{RUN_SEPARATOR}{time.strftime('%Y-%m-%dT%H:%M:%S')}: {' '.join(spec.argv)}\n".encode())
        out.flush()
        try:
            popen = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=spec.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise StartupFailed(spec.name, f"cannot execute {spec.argv[0]}: {exc.strerror}", log) from None
    try:
        created = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        created = 0.0
    return Running(spec, popen, log, created)


def wait_ready(
    children: Sequence[Running],
    timeout_s: float,
    poll_s: float = 0.05,
    cancelled: Callable[[], bool] = lambda: False,
) -> None:
    """Block until every child's readiness check passes.

    Raises:
        StartupFailed: A child exited, or had not answered when ``timeout_s`` ran out. Names the first such child
            and its log.
        Cancelled: ``cancelled()`` turned true while waiting.
    """
    deadline = time.monotonic() + timeout_s
    pending = list(children)
    while pending:
        if cancelled():
            raise Cancelled("stopped while waiting for children to answer")
        for child in list(pending):
            code = child.popen.poll()
            if code is not None:
                raise StartupFailed(child.spec.name, f"exited with code {code}", child.log)
            if child.spec.ready is None:
                if time.monotonic() - child.started_at >= SETTLE_S:
                    pending.remove(child)
            elif child.spec.ready():
                pending.remove(child)
        if not pending:
            return
        if time.monotonic() > deadline:
            child = pending[0]
            raise StartupFailed(child.spec.name, f"did not answer within {timeout_s:.0f} s", child.log)
        time.sleep(poll_s)


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process is in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for proc in psutil.process_iter(["status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
        except (ProcessLookupError, psutil.Error):
            continue
    return False


def kill_groups(pgids: Sequence[int], grace_s: float, reap: Callable[[], None] = lambda: None) -> None:
    """SIGTERM every group in ``pgids``, wait up to ``grace_s``, then SIGKILL the survivors. Blocks until gone.

    ``reap`` is called while waiting so that the caller can collect its own zombie children.
    """
    _signal_groups(pgids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = list(pgids)
    while alive and time.monotonic() < deadline:
        reap()
        alive = [g for g in alive if group_alive(g)]
        if alive:
            time.sleep(0.05)
    if alive:
        _signal_groups(alive, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while alive and time.monotonic() < deadline:
            reap()
            alive = [g for g in alive if group_alive(g)]
            if alive:
                time.sleep(0.05)


def stop(children: Sequence[Running], grace_s: float) -> None:
    """Stop every child's process group (SIGTERM, then SIGKILL after ``grace_s``) and reap the children."""

    def reap() -> None:
        for child in children:
            child.popen.poll()

    kill_groups([c.pid for c in children], grace_s, reap)
    for child in children:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.popen.wait(timeout=1.0)


def is_same_process(pid: int, create_time: float) -> bool:
    """True if ``pid`` is alive and is the very process that was recorded (same start time)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - create_time) < 0.01
    except psutil.Error:
        return False


def _signal_groups(pgids: Sequence[int], sig: signal.Signals) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
