"""A whole local pipeline as one object: the emulators (via ``LocalCloud``) plus front-ends and replicators that the
harness owns individually, so the demo, the benchmarks, the soak and the chaos suite can kill, restart and re-route
each process.

Contract:
  * ``start()`` blocks until every process answers; ``stop()`` stops everything it started (SIGTERM, then SIGKILL)
    and is idempotent. Use it as a context manager.
  * ``kill(name)`` sends SIGKILL for real to a front-end or replicator; ``restart(name)`` starts it again with the
    same command line, port and environment (so clients reconnect to the same address).
  * Per-role environment overrides let a test put a fault proxy between a role and a service, e.g.
    ``frontend_env={"PUBSUB_EMULATOR_HOST": proxy}``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

from service.local import procs
from service.local.children import tcp_ready
from service.local.config import LocalConfig
from service.local.endpoints import Endpoints
from service.local.launcher import LocalCloud


@dataclass(frozen=True)
class PipelineConfig:
    """What to run. ``*_args`` are appended to ``logpipe serve`` / ``logpipe replicate``."""

    state_dir: Path
    frontends: int = 2
    replicators: int = 2
    frontend_env: Mapping[str, str] = field(default_factory=dict)
    replicator_env: Mapping[str, str] = field(default_factory=dict)
    loaders: int = 1
    frontend_args: tuple[str, ...] = ()
    replicator_args: tuple[str, ...] = ()
    loader_args: tuple[str, ...] = ()
    loader_env: Mapping[str, str] = field(default_factory=dict)
    python: Path = Path(sys.executable)
    startup_timeout_s: float = 60.0


class Pipeline:
    """Emulators plus individually controllable logpipe processes. No I/O until ``start()``."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self._cloud = LocalCloud(
            LocalConfig(state_dir=config.state_dir, frontends=0, replicators=0, loaders=0, python=config.python)
        )
        self.endpoints: Endpoints | None = None
        self._specs: dict[str, procs.ProcessSpec] = {}
        self._running: dict[str, procs.Running] = {}
        self.ingest_targets: list[str] = []

    @property
    def logs_dir(self) -> Path:
        return self.config.state_dir / "logs"

    def start(self) -> Endpoints:
        """Start the emulators, then the front-ends, replicators and loaders; block until all answer."""
        ep = self.start_cloud()
        self.start_apps()
        return ep

    def start_cloud(self) -> Endpoints:
        """Start and provision the emulators only (so a test can put proxies in front of them)."""
        self.endpoints = self._cloud.start()
        return self.endpoints

    def start_apps(
        self,
        frontend_env: Mapping[str, str] | None = None,
        replicator_env: Mapping[str, str] | None = None,
        loader_env: Mapping[str, str] | None = None,
    ) -> None:
        """Start the logpipe processes; ``*_env`` override the config's per-role environment. Blocks until ready."""
        ep = self.endpoints
        if ep is None:
            raise RuntimeError("start_cloud() first")
        cfg = self.config
        try:
            base = [str(cfg.python), "-m", "service.cli"]
            env: dict[str, str | None] = dict(ep.env())
            for i in range(cfg.frontends):
                port = procs.free_port()
                addr = f"127.0.0.1:{port}"
                self.ingest_targets.append(addr)
                fe_env = {**env, **cfg.frontend_env, **(frontend_env or {}), "LOGPIPE_LISTEN": addr}
                fe_env["LOGPIPE_SPOOL_DIR"] = str(self.spool_dir(f"frontend-{i}"))
                self._specs[f"frontend-{i}"] = procs.ProcessSpec(
                    f"frontend-{i}", [*base, "serve", *cfg.frontend_args], fe_env, tcp_ready(port)
                )
            for i in range(cfg.replicators):
                r_env = {**env, **cfg.replicator_env, **(replicator_env or {}), "LOGPIPE_WORKER_ID": f"replicator-{i}"}
                self._specs[f"replicator-{i}"] = procs.ProcessSpec(
                    f"replicator-{i}", [*base, "replicate", *cfg.replicator_args], r_env, None
                )
            for i in range(cfg.loaders):
                l_env = {**env, **cfg.loader_env, **(loader_env or {})}
                self._specs[f"loader-{i}"] = procs.ProcessSpec(
                    f"loader-{i}", [*base, "load", *cfg.loader_args], l_env, None
                )
            for name in self._specs:
                self._running[name] = procs.start(self._specs[name], self.logs_dir)
            procs.wait_ready(list(self._running.values()), cfg.startup_timeout_s)
        except BaseException:
            self.stop()
            raise

    def spool_dir(self, frontend: str) -> Path:
        """The on-disk spool of a front-end (kept across its restarts)."""
        return self.config.state_dir / f"spool-{frontend}"

    def names(self, role: str) -> list[str]:
        """Process names of a role: ``frontend``, ``replicator`` or ``loader``."""
        return [n for n in self._specs if n.startswith(f"{role}-")]

    def pid(self, name: str) -> int:
        return self._running[name].pid

    def alive(self, name: str) -> bool:
        return name in self._running and self._running[name].popen.poll() is None

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal ``name``'s process group (SIGKILL by default) and reap it."""
        child = self._running.pop(name)
        if sig is not signal.SIGKILL:
            procs.stop([child], grace_s=30.0)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)  # for real: no SIGTERM first, no chance to clean up
        child.popen.wait(timeout=10.0)

    def restart(self, name: str, *, wait: bool = True) -> None:
        """Start ``name`` again with its original spec (same port for front-ends)."""
        if self.alive(name):
            raise RuntimeError(f"{name} is still running")
        child = procs.start(self._specs[name], self.logs_dir)
        self._running[name] = child
        if wait:
            procs.wait_ready([child], self.config.startup_timeout_s)

    def set_env(self, role: str, **env: str) -> None:
        """Change the environment used by the next (re)start of every process of ``role``."""
        for n in self.names(role):
            self._specs[n] = replace(self._specs[n], env={**self._specs[n].env, **env})

    def all_pids(self) -> dict[str, int]:
        """Every live process: emulators and logpipe processes."""
        out = {p.name: p.pid for p in (self.endpoints.processes if self.endpoints else ())}
        out.update({n: c.pid for n, c in self._running.items() if c.popen.poll() is None})
        return out

    def stop(self) -> None:
        """Stop front-ends (they drain), then replicators, then the emulators. Idempotent."""
        running, self._running = self._running, {}
        fes = [c for n, c in running.items() if n.startswith("frontend-")]
        reps = [c for n, c in running.items() if not n.startswith("frontend-")]
        procs.stop(fes, 30.0)
        procs.stop(reps, 30.0)
        self._cloud.stop()

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
