"""``logpipe bench soak`` (``make soak``): run the pipeline for a long time at a fraction of measured capacity, and
check that RSS, open files and threads of every process stay flat.

The rate defaults to 50% of the end-to-end capacity measured by the latest ``logpipe bench e2e`` result in
``bench/results/`` (or 2,500 events/s when there is none). Writes ``soak-<ts>.json`` and ``soak-<ts>.png``; the
verdict compares, per process, the first-quarter and last-quarter medians after a warm-up (``sampler.trend``); growth
above ``max_growth_pct`` in RSS, open files or threads fails. After the load, it waits (polling ``COUNT(*)``, up to
``drain_timeout_s``) until BigQuery shows every acked event, then reads the ids once and judges exactly-once.
The pipeline's state directory (process logs included) is kept when the soak fails, and its path is printed.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from service.catalog import default_catalog_path, load_catalog
from service.demo.loadgen import run_load
from service.demo.pipeline import Pipeline, PipelineConfig
from service.demo.reconcile import count_bigquery, judge, read_bigquery
from service.demo.sampler import ResourceSampler, trend
from service.local.clients import bigquery_client

METRICS = ("rss_mb", "fds", "threads")
# Judged processes: logpipe's own. The emulators are stand-ins users never run in production (the Pub/Sub emulator's
# JVM grows its heap lazily up to -Xmx); their curves are reported, not judged. See docs/design.md, "Soak".
OURS = ("frontend-", "replicator-", "loader-")


def default_rate(results: Path) -> float:
    """50% of the latest measured end-to-end capacity, or 2,500 events/s."""
    latest = sorted(results.glob("e2e-*.json"))
    if not latest:
        return 2500.0
    data = json.loads(latest[-1].read_text())
    return max(100.0, 0.5 * float(data["burst"]["end_to_end_events_per_s"]))


def _plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({s["name"] for s in samples})
    fig, axes = plt.subplots(len(METRICS), 1, figsize=(10, 8), sharex=True)
    for ax, key in zip(axes, METRICS, strict=True):
        for n in names:
            pts = [(s["t"], s[key]) for s in samples if s["name"] == n]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=n)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=3)
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(
    minutes: float,
    rate: float | None,
    out_dir: Path,
    console: Console,
    max_growth_pct: float = 25.0,
    drain_timeout_s: float = 600.0,
) -> bool:
    """Soak; returns True when every process stayed flat and every acked event is queryable exactly once."""
    catalog = load_catalog()
    r = rate or default_rate(out_dir)
    console.print(f"soak: {r:.0f} events/s for {minutes:.1f} min")
    tmp = Path(tempfile.mkdtemp(prefix="logpipe-soak-"))
    cfg = PipelineConfig(state_dir=tmp, frontends=2, replicators=2, loaders=1, loader_args=("--interval", "30"))
    with Pipeline(cfg) as pipe:
        ep = pipe.endpoints
        assert ep is not None
        sampler = ResourceSampler(pipe.all_pids, interval_s=10.0)
        sampler.start()
        load = run_load(pipe.ingest_targets, catalog=str(default_catalog_path()), rate=r, duration_s=minutes * 60)
        samples = sampler.stop()
        bq = bigquery_client(ep)
        t_end = time.monotonic()
        seen = count_bigquery(bq, catalog)
        while seen < len(load.acked) and time.monotonic() < t_end + drain_timeout_s:
            console.print(f"  waiting for BigQuery: {seen:,}/{len(load.acked):,} rows", highlight=False)
            time.sleep(10)
            seen = count_bigquery(bq, catalog)
        drain_s = time.monotonic() - t_end
        ids, _ = read_bigquery(bq, catalog)
    verdict = judge(load.acked, ids, maybe=load.failed)
    trends = {n: {k: trend(samples, n, k) for k in METRICS} for n in sorted({s["name"] for s in samples})}
    judged = {n: t for n, t in trends.items() if n.startswith(OURS)}
    flat = bool(judged) and all(t[k]["growth_pct"] <= max_growth_pct for t in judged.values() for k in METRICS)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "bench": "soak", "minutes": minutes, "rate": r, "acked": len(load.acked), "bigquery": verdict.summary(),
        "queryable_after_load_s": round(drain_s, 1), "max_growth_pct": max_growth_pct,
        "judged": sorted(judged), "trends": trends, "flat": flat, "samples": samples,
    }  # fmt: skip
    (out_dir / f"soak-{stamp}.json").write_text(json.dumps(result, indent=2))
    _plot(samples, out_dir / f"soak-{stamp}.png")
    table = Table(title=f"soak: {minutes:.0f} min at {r:.0f} events/s (after warm-up: first quarter -> last quarter)")
    for col in ("process", *METRICS, "judged"):
        table.add_column(col, justify="right")
    for n, t in trends.items():
        cells = (f"{t[k]['first']:.0f} -> {t[k]['last']:.0f} ({t[k]['growth_pct']:+.0f}%)" for k in METRICS)
        table.add_row(n, *cells, "yes" if n in judged else "no (emulator)")
    console.print(table)
    console.print(f"BigQuery {drain_s:.0f} s after the load ended: {verdict.summary()}; flat: {flat}")
    ok = flat and verdict.ok
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        console.print(f"soak FAILED; process logs kept in {tmp / 'logs'}")
    return ok
