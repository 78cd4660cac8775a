"""A missing prerequisite stops the launcher before it starts anything, with one line naming it and the fix."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from service.local.config import INSTALL_HINT, LocalConfig
from service.local.errors import PrerequisiteMissing
from service.local.launcher import LocalCloud

pytestmark = pytest.mark.unit


def _config(tmp_path: Path) -> LocalConfig:
    return LocalConfig(state_dir=tmp_path / "state", frontends=0, replicators=0, loaders=0)


@pytest.mark.parametrize(
    ("change", "what", "hint"),
    [
        ({"pubsub_emulator": Path("/nonexistent/cloud-pubsub-emulator")}, "Pub/Sub emulator", "machine image"),
        ({"java": "no-such-java-binary"}, "java", "Java 17"),
        ({"fake_gcs_binary": None}, "fake-gcs-server", "make install"),
        ({"fake_gcs_binary": Path("/nonexistent/fake-gcs")}, "fake-gcs-server", "make install"),
        ({"bq_venv": Path("/nonexistent/venv-bq")}, "BigQuery emulator venv", INSTALL_HINT),
    ],
)
def test_missing_prerequisite_is_named(tmp_path: Path, change: dict[str, object], what: str, hint: str) -> None:
    cloud = LocalCloud(replace(_config(tmp_path), **change))  # type: ignore[arg-type]
    with pytest.raises(PrerequisiteMissing) as exc:
        cloud.start()
    message = str(exc.value)
    assert message.startswith(f"missing prerequisite: {what}")
    assert hint in message
    assert "\n" not in message
    assert not (tmp_path / "state").exists()  # nothing started, nothing written


def test_missing_duckdb_extensions_point_at_make(tmp_path: Path) -> None:
    venv = tmp_path / "venv-bq"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "local-bigquery").write_text("#!/bin/sh\n")
    with pytest.raises(PrerequisiteMissing, match=r"DuckDB extension .* not found.*make install-emulators"):
        LocalCloud(replace(_config(tmp_path), bq_venv=venv)).start()


def test_cli_prints_one_line_and_fails(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "service.cli", "local", "--state-dir", str(tmp_path / "s")]
    out = subprocess.run(
        [*argv, "--pubsub-emulator", "/nonexistent/emulator"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("error: missing prerequisite: Pub/Sub emulator at /nonexistent/emulator")


def test_cli_reports_a_bad_catalog_in_one_line(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "service.cli", "local", "--state-dir", str(tmp_path / "s")]
    out = subprocess.run(
        [*argv, "--catalog", str(tmp_path / "absent.yaml")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    assert out.stderr.strip() == f"error: cannot read catalog {tmp_path / 'absent.yaml'}: No such file or directory"
    assert not (tmp_path / "s").exists()
