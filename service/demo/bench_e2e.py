"""``logpipe bench e2e``: throughput and freshness (ack -> queryable in BigQuery) of the whole local pipeline.

Phases, in one run on one stack:
  1. steady: ``rate`` events/s for ``duration`` seconds, with probe events; freshness p50/p99 from the probes.
  2. burst: as fast as the clients can, ``burst`` events; ingest throughput (acked events/s) and the time until
     BigQuery shows all of them (end-to-end drain throughput).
Writes ``bench/results/e2e-<ts>.json`` and ``e2e-<ts>.png`` (throughput and freshness over time).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from service.catalog import default_catalog_path, load_catalog
from service.demo.freshness import ProbePoller, percentiles
from service.demo.loadgen import run_load
from service.demo.pipeline import Pipeline, PipelineConfig
from service.demo.sampler import ResourceSampler
from service.local.clients import bigquery_client


def _count(bq: Any, project: str, dataset: str, cats: list[str]) -> int:
    return sum(int(next(iter(bq.query(f"SELECT COUNT(*) FROM `{project}.{dataset}.{c}`").result()))[0]) for c in cats)


def _series(probes: dict[str, float], seen: dict[str, float], probe_every: int, t0: float) -> list[dict[str, Any]]:
    by_sec: dict[int, list[str]] = {}
    for pid, sent in probes.items():
        by_sec.setdefault(int(sent - t0), []).append(pid)
    out = []
    for sec in sorted(by_sec):
        ids = by_sec[sec]
        fresh = [seen[i] - probes[i] for i in ids if i in seen]
        out.append(
            {
                "t": sec,
                "events_per_s": len(ids) * probe_every,
                "freshness_p50_s": percentiles(fresh)["p50"],
                "unseen": sum(1 for i in ids if i not in seen),
            }
        )
    return out


def _plot(series: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    t = [s["t"] for s in series]
    a1.plot(t, [s["events_per_s"] for s in series], color="tab:blue")
    a1.set_ylabel("events/s sent (from probes)")
    a1.set_title(title)
    a2.plot(t, [s["freshness_p50_s"] for s in series], color="tab:red")
    a2.set_ylabel("freshness p50 (s)\nsend -> queryable")
    a2.set_xlabel("seconds since start")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(rate: float, duration: float, burst: int, out_dir: Path, console: Console, loader_interval: float) -> Path:
    """Run both phases and write the results; returns the JSON path."""
    catalog = load_catalog()
    cats = [c.name for c in catalog.categories]
    probe_every = max(1, int(rate // 20)) if rate > 0 else 500
    with tempfile.TemporaryDirectory(prefix="logpipe-bench-e2e-") as tmp:
        cfg = PipelineConfig(
            state_dir=Path(tmp),
            frontends=2,
            replicators=2,
            loaders=1,
            replicator_args=("--finalize-interval", "30"),
            loader_args=("--interval", str(loader_interval)),
        )
        with Pipeline(cfg) as pipe:
            ep = pipe.endpoints
            assert ep is not None
            bq = bigquery_client(ep)
            poller = ProbePoller(bq, ep.project, ep.dataset, cats, interval_s=1.0)
            sampler = ResourceSampler(pipe.all_pids, interval_s=5.0)
            poller.start()
            sampler.start()
            t0 = time.time()
            console.print(f"steady phase: {rate:.0f} events/s for {duration:.0f}s ...")
            steady = run_load(
                pipe.ingest_targets, catalog=str(default_catalog_path()), rate=rate, duration_s=duration,
                probe_every=probe_every, seed=11,
            )  # fmt: skip
            deadline = time.time() + 240
            while time.time() < deadline and len(set(steady.probes) & set(poller.seen)) < len(steady.probes):
                time.sleep(1)
            console.print(f"burst phase: {burst} events as fast as possible ...")
            b0 = time.time()
            burst_res = run_load(
                pipe.ingest_targets, catalog=str(default_catalog_path()), rate=0, duration_s=0,
                count=burst // 2, seed=12, probe_every=1000, batch=1000,
            )  # fmt: skip
            ingest_s = time.time() - b0
            expected = len(steady.acked) + len(burst_res.acked)
            while time.time() < b0 + 600 and _count(bq, ep.project, ep.dataset, cats) < expected:
                time.sleep(2)
            drain_s = time.time() - b0
            poller.stop()
            samples = sampler.stop()
    fresh = [poller.seen[i] - s for i, s in steady.probes.items() if i in poller.seen]
    stats = percentiles(fresh)
    series = _series(steady.probes, poller.seen, probe_every, t0)
    result: dict[str, Any] = {
        "bench": "e2e",
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine": "2 cores, emulators on the same cores",
        "steady": {
            "target_rate": rate, "duration_s": duration, "sent": steady.sent, "acked": len(steady.acked),
            "achieved_rate": len(steady.acked) / steady.seconds if steady.seconds else 0.0,
            "freshness_s": stats, "probes_unseen": len(steady.probes) - len(fresh),
        },
        "burst": {
            "events": len(burst_res.acked), "ingest_events_per_s": len(burst_res.acked) / ingest_s,
            "queryable_after_s": drain_s, "end_to_end_events_per_s": len(burst_res.acked) / drain_s,
        },
        "loader_interval_s": loader_interval,
        "series": series,
        "resources": samples,
    }  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    jpath, ppath = out_dir / f"e2e-{stamp}.json", out_dir / f"e2e-{stamp}.png"
    jpath.write_text(json.dumps(result, indent=2))
    _plot(series, ppath, f"logpipe e2e: {rate:.0f} events/s target, loader every {loader_interval:.0f}s")
    table = Table(title="logpipe bench e2e")
    table.add_column("measure")
    table.add_column("value", justify="right")
    s, b = result["steady"], result["burst"]
    table.add_row("steady rate achieved (events/s)", f"{s['achieved_rate']:.0f}")
    table.add_row("freshness p50 / p99 (s)", f"{stats['p50']:.1f} / {stats['p99']:.1f}")
    table.add_row("probes never seen", str(s["probes_unseen"]))
    table.add_row("burst ingest (acked events/s)", f"{b['ingest_events_per_s']:.0f}")
    table.add_row("burst queryable after (s)", f"{b['queryable_after_s']:.1f}")
    table.add_row("burst end-to-end (events/s)", f"{b['end_to_end_events_per_s']:.0f}")
    console.print(table)
    console.print(f"wrote {jpath} and {ppath}")
    return jpath
