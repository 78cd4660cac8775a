"""``logpipe bench ingest``: events/s, MB/s and ack latency through one front-end, next to two baselines.

Scenarios: event size (200 B, 1 KiB) x events per request (1, 100, 1000) x unary/stream, against
  * ``logpipe``: a ``logpipe serve`` process publishing to the Pub/Sub emulator (validation, envelopes, durable acks);
  * ``bare``: a grpcio server that parses the same requests and does nothing (the ceiling);
and ``direct``: google-cloud-pubsub publishing one message per event (what a user would do without logpipe).
Every load generator is its own process (``service.bench.loadgen``), so it does not share the server's GIL.
The Pub/Sub emulator is started with ``service.local`` (only Pub/Sub), unless ``pubsub_host`` is given. Topics are
created in a bench-only project without subscriptions, so the emulator keeps no messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PROJECT = "logpipe-bench"
SIZES = (200, 1024)
BATCHES = (1, 100, 1000)
MODES = ("unary", "stream")
#: (unary calls in flight, streams, requests in flight per stream) per batch size: enough to keep the server busy.
#: Unary x1000 went from 8 to 16 calls when the C scanner halved the server's CPU per event: at 8 calls and a p50 ack
#: of 84-94 ms the load generator itself capped unary near 90k events/s (Little's law; docs/ingest.md, third pass).
LOAD = {1: (32, 8, 64), 100: (16, 4, 16), 1000: (16, 2, 4)}


@dataclass(frozen=True)
class Row:
    target: str
    mode: str
    size: int
    batch: int
    events_per_s: float
    mb_per_s: float
    p50_ms: float
    p99_ms: float
    events: int
    errors: dict[str, int]
    #: CPU time of the server process (all threads) per event it acked during the scenario, warm-up included.
    server_us_per_event: float | None = None
    #: The same for the Pub/Sub emulator (logpipe rows: the emulator's share of the path).
    emulator_us_per_event: float | None = None


@contextlib.contextmanager
def pubsub_emulator(host: str | None, logs: Path) -> Iterator[tuple[str, int | None]]:
    """A Pub/Sub emulator address and pid: ``host`` as given (pid None), or one started through ``service.local``
    and stopped after."""
    if host:
        yield host, None
        return
    from service.local import procs
    from service.local.config import PUBSUB_EMULATOR
    from service.local.emulators import http_ready

    port = procs.free_port()
    spec = procs.ProcessSpec("bench-pubsub", [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={port}"],
                             {"PUBSUB_EMULATOR_HOST": None}, http_ready(f"http://127.0.0.1:{port}/"))  # fmt: skip
    running = procs.start(spec, logs)
    try:
        procs.wait_ready([running], 60)
        yield f"127.0.0.1:{port}", running.pid
    finally:
        procs.stop([running], 5)


def create_topics(pubsub_host: str, topics: list[str]) -> None:
    import grpc
    from google.api_core.exceptions import AlreadyExists
    from google.cloud import pubsub_v1
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    client = pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=grpc.insecure_channel(pubsub_host)))
    for t in topics:
        with contextlib.suppress(AlreadyExists):
            client.create_topic(name=client.topic_path(PROJECT, t))
    client.transport.close()


@contextlib.contextmanager
def child(argv: list[str], env: dict[str, str], port_file: Path, log: Path) -> Iterator[tuple[int, int]]:
    """A server child that writes its port to ``port_file``; yields (port, pid); stopped by PID (SIGTERM, then
    SIGKILL)."""
    import os

    port_file.unlink(missing_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=out, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not port_file.exists():
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{argv[:4]} did not start; see {log}")
            time.sleep(0.05)
        yield int(port_file.read_text()), proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_loadgen(target: str, mode: str, size: int, batch: int, seconds: float, warmup: float) -> dict[str, Any]:
    unary_calls, streams, window = LOAD[batch]
    conc = streams if mode == "stream" else unary_calls
    argv = [sys.executable, "-m", "service.bench.loadgen", "--target", target, "--mode", mode, "--batch", str(batch),
            "--size", str(size), "--seconds", str(seconds), "--warmup", str(warmup), "--concurrency", str(conc),
            "--window", str(window)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + warmup + 300, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of ``pid`` and its children (all threads); 0 when unknown or gone."""
    import psutil

    if pid is None:
        return 0.0
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
        return sum(t.user + t.system for t in (p.cpu_times() for p in procs))
    except psutil.Error:
        return 0.0


def run_direct(pubsub_host: str, size: int, seconds: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", "service.bench.direct", "--pubsub-host", pubsub_host, "--project", PROJECT,
            "--topic", "bench-direct", "--size", str(size), "--seconds", str(seconds)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 300, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run_bench(pubsub_host: str | None, quick: bool, seconds: float | None, out_dir: Path) -> dict[str, Any]:
    """Run every scenario; returns the report (also written to ``out_dir/ingest-<timestamp>.json``)."""
    from service.catalog import load_catalog

    secs = seconds or (1.5 if quick else 5.0)
    warmup = 0.5 if quick else 1.0
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="logpipe-bench-"))
    catalog = load_catalog()
    with pubsub_emulator(pubsub_host, work) as (host, emulator_pid):
        create_topics(host, [*(catalog.topic(t.name) for t in catalog.tiers), "bench-direct"])
        serve_env = {"PUBSUB_EMULATOR_HOST": host, "GOOGLE_CLOUD_PROJECT": PROJECT, "LOGPIPE_LOG_LEVEL": "WARNING",
                     "LOGPIPE_SPOOL_DIR": str(work / "spool"),
                     # The front-end's throughput at the 50 ms bound (the default is 500 ms against small
                     # objects): the load generator keeps 8 requests in flight, fewer events than a 200 B envelope
                     # holds, so a longer bound would measure the load generator's latency, not the front-end.
                     "LOGPIPE_ENVELOPE_MAX_LATENCY_MS": os.environ.get(_LATENCY_VAR, "50")}  # fmt: skip
        serve = [sys.executable, "-m", "service.cli", "serve", "--port", "0", "--port-file", str(work / "serve.port")]
        bare = [sys.executable, "-m", "service.bench.bare", "--port-file", str(work / "bare.port")]
        with (
            child(serve, serve_env, work / "serve.port", work / "serve.log") as (serve_port, serve_pid),
            child(bare, {}, work / "bare.port", work / "bare.log") as (bare_port, bare_pid),
        ):
            for size in SIZES:
                for batch in BATCHES:
                    for mode in MODES:
                        for name, port, pid in (("bare", bare_port, bare_pid), ("logpipe", serve_port, serve_pid)):
                            cpu0, emu0 = cpu_seconds(pid), cpu_seconds(emulator_pid)
                            r = run_loadgen(f"127.0.0.1:{port}", mode, size, batch, secs, warmup)
                            n = max(1, r.get("events_total", r["events"]))
                            us = (cpu_seconds(pid) - cpu0) * 1e6 / n
                            emu = (cpu_seconds(emulator_pid) - emu0) * 1e6 / n if emulator_pid else None
                            rows.append(Row(name, mode, size, batch, r["events_per_s"], r["mb_per_s"], r["p50_ms"],
                                            r["p99_ms"], r["events"], r["errors"], us, emu))  # fmt: skip
        for size in SIZES:
            r = run_direct(host, size, secs)
            rows.append(Row("direct-pubsub", "publish", size, 1, r["events_per_s"], r["mb_per_s"], r["p50_ms"],
                            r["p99_ms"], r["events"], r["errors"]))  # fmt: skip
    report = summarize(rows, quick=quick, seconds=secs)
    report["frontend"] = frontend_settings(serve_env)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"ingest-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    report["path"] = str(path)
    return report


_LATENCY_VAR = "LOGPIPE_ENVELOPE_MAX_LATENCY_MS"


def frontend_settings(serve_env: dict[str, str]) -> dict[str, Any]:
    """The ``logpipe serve`` settings that shape throughput, as the child resolves them (environment included)."""
    import os

    from service.frontend.config import load_config

    cfg = load_config(None, {**os.environ, **serve_env})
    keys = ("workers", "max_concurrent_rpcs", "gil_switch_interval_ms", "malloc_keep_mib", "zstd_level",
            "envelope_target_bytes", "envelope_max_latency_ms")  # fmt: skip
    return {k: getattr(cfg, k) for k in keys}


def summarize(rows: list[Row], *, quick: bool, seconds: float) -> dict[str, Any]:
    """Add ratios: logpipe / bare for the same scenario, and best logpipe (1 KiB) / direct publishing (1 KiB)."""
    bare = {(r.mode, r.size, r.batch): r.events_per_s for r in rows if r.target == "bare"}
    out = []
    for r in rows:
        d = asdict(r)
        if r.target == "logpipe" and bare.get((r.mode, r.size, r.batch)):
            d["ratio_to_bare"] = r.events_per_s / bare[(r.mode, r.size, r.batch)]
        out.append(d)
    direct = next((r.events_per_s for r in rows if r.target == "direct-pubsub" and r.size == 1024), 0.0)
    best = max(
        (r for r in rows if r.target == "logpipe" and r.size == 1024), key=lambda r: r.events_per_s, default=None
    )
    import os
    import platform

    return {
        "benchmark": "ingest",
        "quick": quick,
        "seconds_per_scenario": seconds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "rows": out,
        "best_logpipe_1k": asdict(best) if best else None,
        "best_vs_direct_1k": (best.events_per_s / direct) if best and direct else None,
        "target_events_per_s": 100_000,
        "load": {str(b): dict(zip(("unary_calls", "streams", "per_stream"), v, strict=True)) for b, v in LOAD.items()},
    }


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="logpipe bench ingest")
    cols = ("target", "mode", "size", "batch", "events/s", "MB/s", "p50 ms", "p99 ms", "vs bare", "cpu us/ev", "errors")
    for col in cols:
        table.add_column(col, justify="right" if col not in ("target", "mode") else "left")
    for r in report["rows"]:
        ratio = r.get("ratio_to_bare")
        cells = [r["target"], r["mode"], str(r["size"]), str(r["batch"]), f"{r['events_per_s']:,.0f}",
                 f"{r['mb_per_s']:.1f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                 "" if ratio is None else f"{ratio:.0%}", _cpu_cell(r),
                 json.dumps(r["errors"]) if r["errors"] else ""]  # fmt: skip
        table.add_row(*cells)
    console = Console(width=max(Console().width, 130))
    console.print(table)
    if report.get("best_vs_direct_1k"):
        console.print(f"best logpipe 1 KiB: {report['best_logpipe_1k']['events_per_s']:,.0f} events/s = "
                      f"{report['best_vs_direct_1k']:.1f}x direct publishing")  # fmt: skip
    console.print(f"results: {report.get('path')}")


def _cpu_cell(row: dict[str, Any]) -> str:
    """Server CPU per event, plus the emulator's for logpipe rows (``12.3 + 4.5``)."""
    us, emu = row.get("server_us_per_event"), row.get("emulator_us_per_event")
    if us is None:
        return ""
    return f"{us:.1f}" if emu is None or row["target"] != "logpipe" else f"{us:.1f} + {emu:.1f}"
