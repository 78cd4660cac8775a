"""The benchmark's pieces work: the load generator against a front-end and the bare server, and the summary."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.bench.ingest import Row, run_loadgen, summarize
from tests.unit.frontend_support import published_event_ids, running_frontend

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mode", ["unary", "stream"])
def test_loadgen_against_a_front_end(tmp_path: Path, mode: str) -> None:
    with running_frontend(tmp_path) as (fe, _stub, pub):
        r = run_loadgen(f"127.0.0.1:{fe.port}", mode, 200, 100, seconds=1.0, warmup=0.2)
        assert r["errors"] == {} and r["events"] > 0 and r["p99_ms"] >= r["p50_ms"] > 0
        assert r["events_total"] >= r["events"]  # the warm-up's events too (the server's CPU is per all of them)
        assert len(published_event_ids(pub)) >= r["events"]  # every counted event was acked, so published


def test_bare_server_answers_counts(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "service.bench.bare", "--port-file", str(port_file)])
    try:
        deadline = time.time() + 30
        while not port_file.exists():
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        r = run_loadgen(f"127.0.0.1:{int(port_file.read_text())}", "unary", 200, 100, seconds=0.5, warmup=0.1)
        assert r["events"] > 0 and r["errors"] == {}
    finally:
        proc.terminate()
        proc.wait(10)


def test_summary_ratios() -> None:
    rows = [
        Row("bare", "unary", 1024, 1000, 200_000.0, 200.0, 1.0, 2.0, 1, {}),
        Row("logpipe", "unary", 1024, 1000, 50_000.0, 50.0, 3.0, 9.0, 1, {}),
        Row("direct-pubsub", "publish", 1024, 1, 5_000.0, 5.0, 1.0, 2.0, 1, {}),
    ]
    report = summarize(rows, quick=True, seconds=1.0)
    assert report["rows"][1]["ratio_to_bare"] == pytest.approx(0.25)
    assert report["best_vs_direct_1k"] == pytest.approx(10.0)


def test_cpu_seconds_of_this_process_and_of_nobody() -> None:
    import os

    from service.bench.ingest import cpu_seconds

    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert cpu_seconds(os.getpid()) > before > 0
    assert cpu_seconds(None) == 0.0


def test_report_names_the_front_end_settings() -> None:
    from service.bench.ingest import frontend_settings

    settings = frontend_settings({"LOGPIPE_ZSTD_LEVEL": "3"})
    assert settings["zstd_level"] == 3 and settings["envelope_target_bytes"] == 2 * 1024 * 1024
