"""``LocalCloud``: start, provision and stop one local stack. Used by ``logpipe local``, the test fixtures and tools.

Contract:
  * ``start()`` blocks until every child answers and provisioning is done, then atomically writes
    ``<state_dir>/endpoints.json`` and returns the ``Endpoints``. On any failure it stops what it started and raises
    (``PrerequisiteMissing``, ``StartupFailed``, ``StackBusy``, ``Cancelled``, ``CatalogError``, or the error of a
    provisioning step).
  * ``stop()`` stops every child's process group (SIGTERM, SIGKILL after ``stop_timeout_s``), removes endpoints.json
    and the ledger, and is safe to call twice or after a failed start.
  * Crash safety: ``<state_dir>/processes.json`` (the ledger) lists the launcher and every child as soon as it is
    started. A later ``start()`` on the same directory kills the children a dead launcher left behind (only those
    whose pid and start time still match), and refuses with ``StackBusy`` while the recorded launcher is alive.
  * What survives a restart: GCS objects and BigQuery data (on disk under the state dir). Pub/Sub is in-memory: topics
    and subscriptions are provisioned again, messages are gone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from types import TracebackType

import psutil

from service.catalog import load_catalog
from service.local import procs
from service.local.children import AppPlan, plan_apps, registered_commands
from service.local.config import LocalConfig
from service.local.emulators import EmulatorPorts, check_prerequisites, emulator_specs
from service.local.endpoints import FILENAME, Endpoints, write_atomic
from service.local.errors import Cancelled, StackBusy
from service.local.provision import ProvisionStep, default_steps, provision

LEDGER = "processes.json"


class LocalCloud:
    """One local stack. No I/O happens until ``start()``."""

    def __init__(
        self,
        config: LocalConfig,
        steps: list[ProvisionStep] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        """``steps`` replaces ``default_steps()``; ``cancelled`` is polled during ``start()`` (between children and
        while waiting for them), which then stops what it started and raises ``Cancelled``."""
        self.config = config
        self._steps = steps
        self._cancelled = cancelled
        self._children: list[procs.Running] = []
        self._owns_state = False  # True once this instance has claimed the state directory
        self.endpoints: Endpoints | None = None
        self.notes: tuple[str, ...] = ()
        self.timings: dict[str, float] = {}
        """Seconds spent per phase of the last ``start()``: emulators, provisioning, apps."""

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> Endpoints:
        """Start the emulators (and any front-ends/replicators), provision, write endpoints.json. Blocks."""
        cfg = self.config
        check_prerequisites(cfg)
        catalog = load_catalog(cfg.catalog_path)
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        clean_stale(cfg.state_dir, cfg.stop_timeout_s)
        me = psutil.Process()
        self._owns_state = True
        self._write_ledger()
        try:
            ports = EmulatorPorts.resolve(cfg)
            t0 = time.monotonic()
            self._launch(emulator_specs(cfg, ports))
            self.timings["emulators"] = time.monotonic() - t0
            base = Endpoints(
                project=cfg.project,
                pubsub_host=f"127.0.0.1:{ports.pubsub}",
                gcs_url=f"http://127.0.0.1:{ports.gcs}",
                bigquery_url=f"http://127.0.0.1:{ports.bigquery}",
                bigquery_grpc=f"127.0.0.1:{ports.bigquery_grpc}",
                bucket=cfg.bucket,
                dataset=catalog.dataset,
                catalog=str(cfg.catalog_path.resolve()),
                state_dir=str(cfg.state_dir.resolve()),
                launcher_pid=me.pid,
                launcher_create_time=me.create_time(),
            )
            self._check_cancelled()
            t0 = time.monotonic()
            provision(base, catalog, self._steps if self._steps is not None else default_steps())
            self.timings["provisioning"] = time.monotonic() - t0
            t0 = time.monotonic()
            plan: AppPlan = plan_apps(
                cfg, base, registered_commands() if cfg.frontends or cfg.replicators or cfg.loaders else set()
            )
            self.notes = plan.notes
            self._launch(list(plan.specs))
            self.timings["apps"] = time.monotonic() - t0
            processes = tuple(c.info() for c in self._children)
            self.endpoints = replace(base, ingest_targets=plan.ingest_targets, processes=processes)
            self.endpoints.write(cfg.state_dir)
            return self.endpoints
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every child (newest first), then remove endpoints.json and the ledger. Idempotent.

        Files are only removed if this instance claimed the state directory: a launcher refused with ``StackBusy``
        must not delete the running stack's endpoints.json.
        """
        if self._owns_state:
            (self.config.state_dir / FILENAME).unlink(missing_ok=True)
        children, self._children = self._children, []
        procs.stop(list(reversed(children)), self.config.stop_timeout_s)
        if self._owns_state:
            (self.config.state_dir / LEDGER).unlink(missing_ok=True)
            self._owns_state = False
        self.endpoints = None

    def dead_children(self) -> list[tuple[str, int, Path]]:
        """(name, exit code, log) of every child that has exited. Non-blocking."""
        dead = []
        for child in self._children:
            code = child.popen.poll()
            if code is not None:
                dead.append((child.spec.name, code, child.log))
        return dead

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- internals ---------------------------------------------------------------------------------------------
    def _launch(self, specs: list[procs.ProcessSpec]) -> None:
        started = []
        for spec in specs:
            self._check_cancelled()
            child = procs.start(spec, self.config.logs_dir)
            self._children.append(child)
            started.append(child)
            self._write_ledger()
        procs.wait_ready(started, self.config.startup_timeout_s, cancelled=self._cancelled)

    def _check_cancelled(self) -> None:
        if self._cancelled():
            raise Cancelled("stopped before the stack was ready")

    def _write_ledger(self) -> None:
        me = psutil.Process()
        ledger = {
            "launcher": {"pid": me.pid, "create_time": me.create_time()},
            "children": [asdict(c.info()) for c in self._children],
        }
        write_atomic(self.config.state_dir / LEDGER, json.dumps(ledger, indent=2) + "\n")


def clean_stale(state_dir: Path, grace_s: float) -> list[int]:
    """Kill children left by a launcher that died without stopping them; remove its files.

    Reads the ledger and endpoints.json. Only processes whose (pid, start time) still match the record are killed,
    so a reused pid is never hit. Returns the pids killed.

    Raises:
        StackBusy: The recorded launcher is still alive (and is not this process).
    """
    records: list[dict[str, object]] = []
    launcher: dict[str, object] = {}
    for name in (LEDGER, FILENAME):
        try:
            data = json.loads((state_dir / name).read_text())
        except (OSError, ValueError):
            continue
        if name == LEDGER:
            launcher = data.get("launcher") or {}
            records.extend(data.get("children") or [])
        else:
            launcher = launcher or {"pid": data.get("launcher_pid"), "create_time": data.get("launcher_create_time")}
            records.extend(data.get("processes") or [])
    owner = _identity(launcher)
    if owner is not None and owner[0] != os.getpid() and procs.is_same_process(*owner):
        pid = owner[0]
        raise StackBusy(f"a stack is already running in {state_dir} (launcher pid {pid}); stop it first")
    recorded = {_identity(r) for r in records} - {None}
    leftovers = sorted(pid for pid, created in filter(None, recorded) if procs.is_same_process(pid, created))
    procs.kill_groups(leftovers, grace_s)
    for name in (LEDGER, FILENAME):
        (state_dir / name).unlink(missing_ok=True)
    return leftovers


def _identity(record: dict[str, object]) -> tuple[int, float] | None:
    """(pid, create_time) of a ledger or endpoints.json record, or None if it is malformed."""
    pid, created = record.get("pid"), record.get("create_time")
    if isinstance(pid, int) and isinstance(created, int | float):
        return pid, float(created)
    return None
