"""Every command the README and the Makefile name is registered in the `logpipe` CLI."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from service.cli import app

pytestmark = pytest.mark.unit

ROOT = {"local", "env", "categories", "demo", "smoke", "serve", "send", "replicate", "finalize", "partitions",
        "load", "query", "bench"}  # fmt: skip
BENCH = {"ingest", "replicate", "e2e", "soak"}


def _listed(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", sorted(ROOT))
def test_root_command_is_registered(name: str) -> None:
    assert f" {name} " in _listed([])


@pytest.mark.parametrize("name", sorted(BENCH))
def test_bench_command_is_registered(name: str) -> None:
    assert f" {name} " in _listed(["bench"])


def test_logpipe_turns_off_the_storage_librarys_metadata_threads_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.cli import GCS_BUCKET_METADATA_SWITCH

    monkeypatch.delenv(GCS_BUCKET_METADATA_SWITCH, raising=False)
    assert CliRunner().invoke(app, ["partitions", "--help"]).exit_code == 0
    assert os.environ[GCS_BUCKET_METADATA_SWITCH] == "true"
    monkeypatch.setenv(GCS_BUCKET_METADATA_SWITCH, "false")  # an operator's explicit choice is kept
    assert CliRunner().invoke(app, ["partitions", "--help"]).exit_code == 0
    assert os.environ[GCS_BUCKET_METADATA_SWITCH] == "false"
