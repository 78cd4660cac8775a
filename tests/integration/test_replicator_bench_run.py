"""``logpipe bench replicate`` end to end at a small size: its own emulators, a warm-up, both baselines, a real
worker and a real finalize; the report must account for every event and carry each phase's CPU breakdown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_small_bench_run_reports_every_phase(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "bench",
            "replicate",
            "--events",
            "24000",
            "--events-per-envelope",
            "1000",
            "--warmup-envelopes",
            "3",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "CPU ms per message" in out.stdout and "targets: >= 100k events/s per worker" in out.stdout
    (path,) = tmp_path.glob("replicate-*.json")
    report = json.loads(path.read_text())
    assert report["backlog"] == {**report["backlog"], "messages": 24, "events": 24000}
    assert report["finalize"]["events"] == 24000  # every landed event committed once
    assert report["bare_pull_ack"]["messages"] == 24 and report["bare_streaming_ack"]["messages"] >= 24
    assert report["warmup_envelopes"] == 3 and report["warmup"]["cpu_seconds"]["emulator"] > 0
    assert set(report["landing"]["cpu_ms_per_message"]) >= {"emulator", "gcs", "worker"}
    assert report["landing"]["cpu_ms_per_message"]["worker"] > 0
    assert set(report["bare_pull_ack"]["cpu_ms_per_message"]) >= {"emulator", "client"}
    assert report["landing"]["vs_bare_bytes"] > 0
    # The stand-ins' CPU alone bounds the landing (CPU is conserved; /proc's 10 ms ticks allow a little slack).
    ceiling = report["landing"]["standin_ceiling"]
    assert ceiling is not None and "stand-ins' ceiling" in out.stdout
    assert report["landing"]["messages_per_s"] <= ceiling["messages_per_s"] * 1.1
