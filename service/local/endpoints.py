"""``Endpoints``: where a running local stack answers, as written to ``<state_dir>/endpoints.json``.

Contract:
  * ``write`` is atomic (temporary file + rename): a reader sees the old file or the new one, never half of one.
  * ``env()`` is the single definition of the variables that ``logpipe env`` prints and that the launcher gives to
    ``logpipe serve`` / ``logpipe replicate`` children.
  * The file describes one run. ``Endpoints.load`` does not check that the run is alive; ``load_live`` does.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.local.errors import NoStackRunning

FILENAME = "endpoints.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ProcessInfo:
    """One process the launcher started (``pid`` is also its process-group id)."""

    name: str
    pid: int
    create_time: float
    log: str


@dataclass(frozen=True)
class Endpoints:
    """Addresses and names of one running stack. All hosts are 127.0.0.1.

    Attributes:
        project: Project id used by every emulator and client.
        pubsub_host: ``host:port`` of the Pub/Sub emulator (gRPC), the form PUBSUB_EMULATOR_HOST takes.
        gcs_url: ``http://host:port`` of fake-gcs-server, the form STORAGE_EMULATOR_HOST takes.
        bigquery_url: ``http://host:port`` of the BigQuery REST API.
        bigquery_grpc: ``host:port`` of the BigQuery Storage Write API (gRPC).
        ingest_targets: ``host:port`` of each running front-end (empty until ``logpipe serve`` exists).
        bucket: The landing bucket.
        dataset: The BigQuery dataset (from the catalog).
        catalog: Absolute path of the catalog the stack was provisioned from.
        state_dir: Absolute path of the state directory.
        launcher_pid / launcher_create_time: The process that owns the stack (the ``logpipe local`` process, or the
            test process that started it).
        processes: Every child started, emulators first.
    """

    project: str
    pubsub_host: str
    gcs_url: str
    bigquery_url: str
    bigquery_grpc: str
    bucket: str
    dataset: str
    catalog: str
    state_dir: str
    launcher_pid: int
    launcher_create_time: float
    ingest_targets: tuple[str, ...] = ()
    processes: tuple[ProcessInfo, ...] = field(default=())
    version: int = SCHEMA_VERSION

    @property
    def pids(self) -> dict[str, int]:
        """Child name -> pid."""
        return {p.name: p.pid for p in self.processes}

    def env(self) -> dict[str, str]:
        """The environment that points logpipe commands and the google clients at this stack."""
        env = {
            "GOOGLE_CLOUD_PROJECT": self.project,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "STORAGE_EMULATOR_HOST": self.gcs_url,
            "BIGQUERY_EMULATOR_HOST": self.bigquery_url,
            "LOGPIPE_BIGQUERY_GRPC": self.bigquery_grpc,
            "LOGPIPE_BUCKET": self.bucket,
            "LOGPIPE_DATASET": self.dataset,
            "LOGPIPE_CATALOG": self.catalog,
            "LOGPIPE_STATE_DIR": self.state_dir,
        }
        if self.ingest_targets:
            env["LOGPIPE_INGEST_TARGET"] = ",".join(self.ingest_targets)
        return env

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Endpoints:
        """Parse ``to_json`` output. Raises ``ValueError`` on anything else."""
        try:
            data: dict[str, Any] = json.loads(text)
            if data.get("version") != SCHEMA_VERSION:
                raise ValueError(f"unsupported endpoints.json version {data.get('version')!r}")
            data["ingest_targets"] = tuple(data.get("ingest_targets", ()))
            data["processes"] = tuple(ProcessInfo(**p) for p in data.get("processes", ()))
            return cls(**data)
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a valid endpoints.json: {exc}") from None

    def write(self, state_dir: Path) -> Path:
        """Atomically write ``<state_dir>/endpoints.json`` and return its path."""
        return write_atomic(Path(state_dir) / FILENAME, self.to_json())

    @classmethod
    def load(cls, state_dir: Path | str) -> Endpoints:
        """Read ``<state_dir>/endpoints.json``.

        Raises:
            NoStackRunning: The file is missing or invalid.
        """
        path = Path(state_dir) / FILENAME
        try:
            return cls.from_json(path.read_text())
        except FileNotFoundError:
            raise NoStackRunning(
                f"no local stack in {state_dir} ({path} not found); start one with `logpipe local`"
            ) from None
        except ValueError as exc:
            raise NoStackRunning(f"{path}: {exc}") from None

    @classmethod
    def load_live(cls, state_dir: Path | str) -> Endpoints:
        """Like ``load``, but raises ``NoStackRunning`` when the launcher that wrote the file is gone."""
        from service.local.procs import is_same_process

        ep = cls.load(state_dir)
        if not is_same_process(ep.launcher_pid, ep.launcher_create_time):
            raise NoStackRunning(
                f"the stack in {state_dir} is not running (launcher pid {ep.launcher_pid} is gone); "
                "start one with `logpipe local`"
            )
        return ep


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
