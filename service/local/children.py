"""Specs for the logpipe processes a stack runs on top of the emulators: front-ends and replicators.

Interface given to those commands (they read it at their entry point):
  * the environment of ``Endpoints.env()`` (see ``logpipe env``), plus
  * front-end i: ``LOGPIPE_LISTEN=127.0.0.1:<port>``; ready when that port accepts TCP connections;
  * replicator i: ``LOGPIPE_WORKER_ID=replicator-<i>``; ready once started and still alive.
A command that is not registered in the CLI yet is skipped with a note instead of failing the stack.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from service.local.config import LocalConfig
from service.local.endpoints import Endpoints
from service.local.procs import ProcessSpec, ReadyCheck, free_port


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


def plan_apps(config: LocalConfig, endpoints: Endpoints, available: set[str]) -> AppPlan:
    """Specs for the configured front-ends and replicators, given the ``available`` CLI commands."""
    base = [str(config.python), "-m", "service.cli"]
    env: dict[str, str | None] = dict(endpoints.env())
    specs: list[ProcessSpec] = []
    targets: list[str] = []
    notes: list[str] = []
    if config.frontends and "serve" not in available:
        notes.append(f"skipped {config.frontends} front-end(s): `logpipe serve` does not exist yet")
    elif config.frontends:
        base_port = config.ports.frontend_base
        for i in range(config.frontends):
            port = base_port + i if base_port else free_port()
            addr = f"127.0.0.1:{port}"
            targets.append(addr)
            specs.append(
                ProcessSpec(f"frontend-{i}", [*base, "serve"], {**env, "LOGPIPE_LISTEN": addr}, tcp_ready(port))
            )
    if config.replicators and "replicate" not in available:
        notes.append(f"skipped {config.replicators} replicator(s): `logpipe replicate` does not exist yet")
    elif config.replicators:
        for i in range(config.replicators):
            worker_env = {**env, "LOGPIPE_WORKER_ID": f"replicator-{i}"}
            specs.append(ProcessSpec(f"replicator-{i}", [*base, "replicate"], worker_env, None))
    return AppPlan(tuple(specs), tuple(targets), tuple(notes))
