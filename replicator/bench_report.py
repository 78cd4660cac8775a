"""The report of ``logpipe bench replicate`` (``replicator.bench``): the table it prints, the benchmark's targets
judged on the run (``target_verdicts``), each phase's CPU per message (``cpu_summary``), and the rate the local
stand-ins alone would allow (``standin_ceiling``). Pure functions of the report dict that ``bench_run.run_bench``
writes, except ``print_table``, which prints.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any


def write_report(report: dict[str, Any], out_dir: Path, kind: str) -> dict[str, Any]:
    """Record ``loadavg_at_end``, write ``report`` to ``<out_dir>/<kind>-<UTC time>.json`` and return it with its
    ``path`` (``logpipe bench replicate`` and ``finalize``)."""
    report["loadavg_at_end"] = os.getloadavg()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{kind}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    report["path"] = str(path)
    return report


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    b, land, fin, bl = report["bare_pull_ack"], report["landing"], report["finalize"], report["backlog"]
    t = Table(
        title=f"logpipe bench replicate: {bl['events']:,} events backlog, {bl['messages']} envelopes, "
        f"{report['event_bytes']} B events, {report['cpus']} CPUs"
    )
    for col in ("path", "events/s", "MiB/s (compressed)", "msgs/s", "peak RSS MiB", "seconds"):
        t.add_column(col)
    t.add_row(
        "bare sync pull+ack (baseline)",
        f"{b['events_per_s']:,.0f}",
        f"{b['mib_per_s']:.1f}",
        f"{b['messages'] / b['seconds']:.0f}",
        "-",
        f"{b['seconds']:.1f}",
    )
    s = report["bare_streaming_ack"]
    t.add_row(
        "bare streaming pull+ack (same mechanism)",
        f"{s['events_per_s']:,.0f}",
        f"{s['mib_per_s']:.1f}",
        f"{s['messages'] / s['seconds']:.0f}",
        "-",
        f"{s['seconds']:.1f}",
    )
    t.add_row(
        "logpipe replicate (landing)",
        f"{land['events_per_s']:,.0f}",
        f"{land['mib_per_s']:.1f}",
        f"{land['messages_per_s']:.0f}",
        f"{land['peak_rss_mib']:.0f}",
        f"{land['seconds']:.1f}",
    )
    t.add_row(
        "logpipe finalize (1 partition)",
        f"{fin['events_per_s']:,.0f}",
        f"{fin['mib_per_s']:.1f}",
        "-",
        f"{fin['peak_rss_mib']:.0f}",
        f"{fin['seconds']:.1f}",
    )
    Console().print(t)
    Console().print(f"CPU ms per message: {cpu_summary(report)}")
    Console().print(
        f"landing bytes/s vs bare streaming loop: {land['vs_bare_bytes']:.0%}, vs bare sync loop: "
        f"{land['vs_bare_sync_bytes']:.0%}; load average at start/end: "
        f"{report['loadavg_at_start'][0]:.1f}/{report['loadavg_at_end'][0]:.1f}; report: {report['path']}"
    )
    Console().print(f"targets: {target_verdicts(report)}")
    if ceiling := land.get("standin_ceiling"):
        Console().print(
            f"stand-ins' ceiling: the emulator and fake-gcs-server alone spent {ceiling['ms_per_message']:.2f} ms of "
            f"CPU per landed message, so on {report['cpus']} CPUs even a worker costing nothing would land at most "
            f"{ceiling['mib_per_s']:.0f} MiB/s = {ceiling['vs_faster_bare']:.0%} of the faster bare loop"
        )


def standin_ceiling(report: dict[str, Any], mib_per_message: float) -> dict[str, float] | None:
    """Upper bound on this run's landing rate set by the local stand-ins alone: the Pub/Sub emulator's and
    fake-gcs-server's CPU per landed message (from the landing's ``cpu_ms_per_message``) on ``report["cpus"]`` cores,
    as if the worker cost nothing. CPU is conserved on a shared machine, so the landing can never beat it; on real
    Pub/Sub and GCS those costs are not on the worker's cores. None when the CPU breakdown is missing or zero."""
    cpu = report.get("landing", {}).get("cpu_ms_per_message", {})
    ms = cpu.get("emulator", 0.0) + cpu.get("gcs", 0.0)
    if ms <= 0:
        return None
    messages_per_s = report["cpus"] * 1000.0 / ms
    mib_per_s = messages_per_s * mib_per_message
    faster = max(report["bare_pull_ack"]["mib_per_s"], report["bare_streaming_ack"]["mib_per_s"])
    return {
        "ms_per_message": ms,
        "messages_per_s": messages_per_s,
        "mib_per_s": mib_per_s,
        "vs_faster_bare": mib_per_s / faster,
    }


def target_verdicts(report: dict[str, Any]) -> str:
    """The benchmark's targets, judged on this run: >= 100k events/s landed by the one worker, and landing bytes/s
    >= 50% of the faster bare loop's (the stricter of the two ratios)."""
    land = report["landing"]
    ratio = min(land["vs_bare_bytes"], land["vs_bare_sync_bytes"])
    rate = "met" if land["events_per_s"] >= 100_000 else "NOT met"
    share = "met" if ratio >= 0.5 else "NOT met"
    return (
        f">= 100k events/s per worker: {rate} ({land['events_per_s']:,.0f}); "
        f">= 50% of the faster bare loop's bytes/s: {share} ({ratio:.0%})"
    )


def cpu_summary(report: dict[str, Any]) -> str:
    """One line: each measured phase's CPU milliseconds per message by process, the emulator's JIT share in
    parentheses (from ``cpu_ms_per_message``; phases without it are left out)."""
    parts = []
    for key, label in (
        ("bare_pull_ack", "bare sync"),
        ("bare_streaming_ack", "bare streaming"),
        ("landing", "landing"),
    ):
        cpu = dict(report.get(key, {}).get("cpu_ms_per_message", {}))
        if not cpu:
            continue
        jit = cpu.pop("emulator_jit", None)
        items = [
            f"{name} {ms:.2f}" + (f" (JIT {jit:.2f})" if name == "emulator" and jit is not None else "")
            for name, ms in cpu.items()
        ]
        parts.append(f"{label}: " + ", ".join(items))
    return "; ".join(parts) or "-"
