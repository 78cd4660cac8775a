"""Specs for the logpipe processes a stack runs on top of the emulators: front-ends and replicators.

Interface given to those commands (they read it at their entry point):
  * every child gets the environment of ``Endpoints.env()`` (what ``logpipe env`` prints);
  * front-end i: ``logpipe serve --host 127.0.0.1 --port P --instance-id frontend-i``
    ``--spool-dir <state>/spool/frontend-i``; ready when P accepts TCP connections. The spool directory is stable
    across restarts, so a restarted stack replays what a killed one spooled;
  * replicator i: ``logpipe replicate`` with ``LOGPIPE_WORKER_ID=replicator-i``; ready when its log shows
    ``replicator ready`` (the first line it prints once every streaming pull is open, see docs/design.md).
A command that is not registered in the CLI yet is skipped with a note instead of failing the stack.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from service.local.config import LocalConfig
from service.local.endpoints import Endpoints
from service.local.procs import RUN_SEPARATOR, ProcessSpec, ReadyCheck, free_ports


@dataclass(frozen=True)
class AppPlan:
    """What to start, the front-end addresses, and why anything asked for is skipped."""

    specs: tuple[ProcessSpec, ...]
    ingest_targets: tuple[str, ...]
    notes: tuple[str, ...]


def registered_commands() -> set[str]:
    """Names of the sub-commands the ``logpipe`` CLI has right now."""
    from service.cli import app

    names: set[str] = set()
    for cmd in app.registered_commands:
        if cmd.name:
            names.add(cmd.name)
        elif cmd.callback is not None:
            names.add(cmd.callback.__name__.replace("_", "-"))
    return names


def tcp_ready(port: int) -> ReadyCheck:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    return check


def log_ready(log: Path, marker: str) -> ReadyCheck:
    """Ready once ``marker`` appears in the child's log (read from the end, where the current run writes)."""

    def check() -> bool:
        try:
            with log.open("rb") as f:
                f.seek(max(0, log.stat().st_size - 256 * 1024))
                tail = f.read().decode(errors="replace")
        except OSError:
            return False
        start = tail.rfind(RUN_SEPARATOR)
        return marker in tail[start:]

    return check


def plan_apps(config: LocalConfig, endpoints: Endpoints, available: set[str]) -> AppPlan:
    """Specs for the configured front-ends, replicators and BigQuery loaders, given the ``available`` CLI commands."""
    base = [str(config.python), "-m", "service.cli"]
    env: dict[str, str | None] = dict(endpoints.env())
    specs: list[ProcessSpec] = []
    targets: list[str] = []
    notes: list[str] = []
    if config.frontends and "serve" not in available:
        notes.append(f"skipped {config.frontends} front-end(s): `logpipe serve` does not exist yet")
    elif config.frontends:
        base_port = config.ports.frontend_base
        ports = [base_port + i for i in range(config.frontends)] if base_port else free_ports(config.frontends)
        for i, port in enumerate(ports):
            addr = f"127.0.0.1:{port}"
            targets.append(addr)
            name = f"frontend-{i}"
            spool = (config.state_dir / "spool" / name).resolve()
            argv = [*base, "serve", "--host", "127.0.0.1", "--port", str(port), "--instance-id", name]
            specs.append(ProcessSpec(name, [*argv, "--spool-dir", str(spool)], env, tcp_ready(port)))
    if config.replicators and "replicate" not in available:
        notes.append(f"skipped {config.replicators} replicator(s): `logpipe replicate` does not exist yet")
    elif config.replicators:
        for i in range(config.replicators):
            name = f"replicator-{i}"
            ready = log_ready(config.logs_dir / f"{name}.log", "replicator ready")
            specs.append(ProcessSpec(name, [*base, "replicate"], {**env, "LOGPIPE_WORKER_ID": name}, ready))
    if config.loaders and "load" not in available:
        notes.append(f"skipped {config.loaders} BigQuery loader(s): `logpipe load` does not exist")
    elif config.loaders:
        # Loaders are safe to run side by side (deterministic job ids); one per stack is enough locally.
        for i in range(config.loaders):
            specs.append(ProcessSpec(f"loader-{i}", [*base, "load"], env, None))
    return AppPlan(tuple(specs), tuple(targets), tuple(notes))
