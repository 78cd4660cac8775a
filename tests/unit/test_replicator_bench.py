"""``logpipe bench replicate``: how many messages the bare baselines move, and how CPU per phase is measured."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from replicator.bench import baseline_count
from replicator.bench_backlog import CpuMeter, jit_cpu_seconds, tree_cpu_seconds
from replicator.bench_report import cpu_summary, standin_ceiling, target_verdicts
from service.cli import app

pytestmark = pytest.mark.unit


def test_baselines_default_to_the_landing_backlog() -> None:
    # 1M events in 1000-event envelopes: the baselines move 1000 messages, like the landing.
    assert baseline_count(1_000_000, 1000, None) == 1000
    assert baseline_count(100_000, 1000, None) == 100


def test_requested_baseline_is_capped_by_the_backlog() -> None:
    assert baseline_count(1_000_000, 1000, 300) == 300
    assert baseline_count(100_000, 1000, 5000) == 100
    assert baseline_count(10, 1000, None) == 1


def test_non_positive_baseline_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["bench", "replicate", "--baseline-envelopes", "0"])
    assert result.exit_code == 2
    assert "--baseline-envelopes" in result.output


def test_cpu_meter_counts_a_child_tree_and_leaves_out_the_callers_children(tmp_path: Path) -> None:
    # A child that burns ~0.3 s of CPU in its own child: the tree counts it, the caller's own figure does not. The
    # grandchild stays alive until the end (a reaped one's CPU leaves the live tree: the loop below would miss it).
    burn = "import sys, time; t = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nsys.stdin.read()"
    script = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {burn!r}], stdin=subprocess.PIPE)\n"
        "sys.stdin.read(); p.communicate(b'')"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE)
    try:
        with CpuMeter({"child": child.pid, "me": os.getpid()}) as meter:
            deadline = time.monotonic() + 30
            while tree_cpu_seconds(child.pid) < 0.3 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert meter.seconds["child"] >= 0.25
        assert meter.seconds["me"] < meter.seconds["child"]
        assert meter.ms_per(10)["child"] == round(meter.seconds["child"] / 10 * 1e3, 2)
    finally:
        child.communicate(b"", timeout=30)


def test_cpu_meter_counts_from_a_reported_start_when_given_one() -> None:
    """The landing's worker reports its CPU as its pulls open (they deliver before it logs ``ready``): work done
    before the meter is entered still counts, and the start-up before the report does not."""
    reported = time.process_time()
    t = time.process_time()
    while time.process_time() - t < 0.2:  # work between the report and the meter's start
        pass
    with CpuMeter({"me": os.getpid()}, since={"me": reported}) as meter:
        pass
    with CpuMeter({"me": os.getpid()}) as plain:
        pass
    assert 0.15 <= meter.seconds["me"] < 5
    assert plain.seconds["me"] < 0.1


@pytest.mark.skipif(shutil.which("java") is None or not Path("/proc/self/task").exists(), reason="needs a JVM, Linux")
def test_jit_cpu_seconds_reads_a_jvms_compiler_threads(tmp_path: Path) -> None:
    # A hot loop makes the JVM's C1/C2 compiler threads work; a dead pid reads None.
    src = tmp_path / "Hot.java"
    src.write_text(
        "public class Hot { public static void main(String[] a) throws Exception { long s = 0;"
        " for (int r = 0; r < 200; r++) for (int i = 0; i < 1_000_000; i++) s += Integer.toString(i ^ r).hashCode();"
        " System.out.println(s); System.in.read(); } }"
    )
    jvm = subprocess.Popen(["java", str(src)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert jvm.stdout is not None
        jvm.stdout.readline()  # the hot loop is done
        jit = jit_cpu_seconds(jvm.pid)
        assert jit is not None and jit > 0
        assert jit < tree_cpu_seconds(jvm.pid)
    finally:
        jvm.communicate(b"\n", timeout=30)
    assert jit_cpu_seconds(jvm.pid) is None
    # A Python process has no compiler threads (a fresh one: this test process may have JVM children, the emulators).
    py = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert jit_cpu_seconds(py.pid) == 0.0
    finally:
        py.communicate(b"", timeout=30)


def test_cpu_summary_lists_each_measured_phase_with_the_jit_share() -> None:
    report = {
        "bare_pull_ack": {"cpu_ms_per_message": {"emulator": 1.5, "client": 1.0, "emulator_jit": 0.4}},
        "bare_streaming_ack": {},
        "landing": {"cpu_ms_per_message": {"emulator": 2.0, "gcs": 4.3, "worker": 4.0}},
    }
    assert cpu_summary(report) == (
        "bare sync: emulator 1.50 (JIT 0.40), client 1.00; landing: emulator 2.00, gcs 4.30, worker 4.00"
    )
    assert cpu_summary({}) == "-"


def test_negative_warmup_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["bench", "replicate", "--warmup-envelopes", "-1"])
    assert result.exit_code == 2
    assert "--warmup-envelopes" in result.output


def test_target_verdicts_judge_against_the_faster_bare_loop() -> None:
    def report(events_per_s: float, vs_streaming: float, vs_sync: float) -> dict[str, Any]:
        return {"landing": {"events_per_s": events_per_s, "vs_bare_bytes": vs_streaming, "vs_bare_sync_bytes": vs_sync}}

    assert target_verdicts(report(170_322, 0.43, 0.29)) == (
        ">= 100k events/s per worker: met (170,322); >= 50% of the faster bare loop's bytes/s: NOT met (29%)"
    )
    assert target_verdicts(report(99_999, 0.6, 0.5)).startswith(">= 100k events/s per worker: NOT met (99,999)")
    assert target_verdicts(report(150_000, 0.6, 0.5)).endswith("bytes/s: met (50%)")


def test_standin_ceiling_is_the_stand_ins_cpu_alone_on_the_machine() -> None:
    report: dict[str, Any] = {
        "cpus": 2,
        "bare_pull_ack": {"mib_per_s": 320.0},
        "bare_streaming_ack": {"mib_per_s": 160.0},
        "landing": {"cpu_ms_per_message": {"emulator": 1.5, "gcs": 3.5, "worker": 3.0, "emulator_jit": 0.4}},
    }
    ceiling = standin_ceiling(report, mib_per_message=0.5)
    assert ceiling is not None
    # 5 ms of stand-in CPU per message on 2 cores: 400 messages/s, 200 MiB/s, against the faster (sync) loop's 320.
    assert ceiling["ms_per_message"] == pytest.approx(5.0)
    assert ceiling["messages_per_s"] == pytest.approx(400.0)
    assert ceiling["mib_per_s"] == pytest.approx(200.0)
    assert ceiling["vs_faster_bare"] == pytest.approx(0.625)
    report["landing"]["cpu_ms_per_message"] = {}
    assert standin_ceiling(report, mib_per_message=0.5) is None
