"""``logpipe demo``: the whole pipeline on the local cloud, end to end, with a verdict.

Steps: start 2 front-ends, 2 replicators and a BigQuery loader; send a seeded workload through the SDK (several
categories, JSON payloads, late events for an hour that is already committed, and invalid events); wait until
BigQuery shows every acked event; finalize; reconcile acked = landed (GCS, via manifests) = queried (BigQuery), each
event exactly once. Exit status 0 only when that holds.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from service.catalog import load_catalog
from service.demo import workload
from service.demo.pipeline import Pipeline, PipelineConfig
from service.demo.reconcile import judge, read_bigquery, read_committed
from service.local.clients import bigquery_client, storage_client
from service.local.endpoints import Endpoints


@dataclass
class SendLog:
    """What the clients were told: acked ids (with send times), rejections by code, failures."""

    sent_at: dict[str, float] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _send(
    targets: list[str], events: list[workload.PlannedEvent], log: SendLog, progress: Progress, label: str
) -> None:
    from service.client import ClientOptions, IngestClient

    task = progress.add_task(label, total=len(events))
    # The SDK refuses a payload over the front-end's default limit itself; the demo lifts that so that its one
    # oversized event reaches the front-end, which must reject it (PAYLOAD_TOO_LARGE, G5).
    with IngestClient(targets, options=ClientOptions(max_payload_bytes=8 * 1024 * 1024)) as client:
        for i, ev in enumerate(events):
            log.sent_at[ev.event_id] = time.monotonic()
            client.send(
                ev.category, ev.payload, event_time=ev.event_time, attributes=ev.attributes, event_id=ev.event_id
            )
            if i % 500 == 499:
                progress.advance(task, 500)
        result = client.flush()
        progress.update(task, completed=len(events))
    bad = {r.event_id: r.code for r in result.rejected} | {f.event_id: f.grpc_code for f in result.failed}
    log.rejected.update({r.event_id: r.code for r in result.rejected})
    log.failed.update({f.event_id: f.grpc_code for f in result.failed})
    log.acked.update(e.event_id for e in events if e.event_id not in bad)


def _finalize(ep: Endpoints, before: dt.datetime) -> None:
    env = {**os.environ, **ep.env()}
    cmd = [sys.executable, "-m", "service.cli", "finalize", "--before", before.strftime("%Y-%m-%dT%H:%M:%SZ")]
    subprocess.run(cmd, env=env, check=True, capture_output=True)


def _bq_count(bq: Any, ep: Endpoints, categories: list[str]) -> tuple[int, int]:
    total = distinct = 0
    for c in categories:
        row = next(
            iter(bq.query(f"SELECT COUNT(*), COUNT(DISTINCT event_id) FROM `{ep.project}.{ep.dataset}.{c}`").result())
        )
        total, distinct = total + int(row[0]), distinct + int(row[1])
    return total, distinct


def _wait_queryable(bq: Any, ep: Endpoints, log: SendLog, categories: list[str], timeout_s: float) -> dict[str, float]:
    """Poll BigQuery until every acked event is visible; returns ack->visible latency for a sample of events."""
    sample = sorted(log.acked)[:: max(1, len(log.acked) // 300)]
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = [i for i in sample if i not in seen]
        if pending:
            ids = ",".join(f"'{i}'" for i in pending)
            for c in categories:
                for r in bq.query(
                    f"SELECT event_id FROM `{ep.project}.{ep.dataset}.{c}` WHERE event_id IN ({ids})"
                ).result():
                    seen.setdefault(r[0], time.monotonic() - log.sent_at[r[0]])
        total, _ = _bq_count(bq, ep, categories)
        if total >= len(log.acked) and len(seen) == len(sample):
            break
        time.sleep(1.0)
    return seen


def run(state_dir: Path | None, events: int, seed: int, console: Console) -> bool:
    """Run the demo; returns True when acked = landed = queried, each event exactly once."""
    catalog = load_catalog()
    cats = [c.name for c in catalog.categories]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="logpipe-demo-") as tmp:
        cfg = PipelineConfig(
            state_dir=state_dir or Path(tmp), frontends=2, replicators=2, loaders=1,
            replicator_args=("--finalize-interval", "5"), loader_args=("--interval", "5"),
        )  # fmt: skip
        console.print("[bold]Starting the local cloud, 2 front-ends, 2 replicators and a BigQuery loader...")
        with Pipeline(cfg) as pipe:
            ep = pipe.endpoints
            assert ep is not None
            console.print(f"  up in {time.monotonic() - t0:.1f}s; front-ends {', '.join(pipe.ingest_targets)}")
            now = dt.datetime.now(dt.UTC)
            past_hour = (now - dt.timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
            main = list(workload.events(catalog, events, seed=seed, now=now))
            late1 = workload.late_events(catalog, 40, seed=seed, hour=past_hour)
            late2 = workload.late_events(catalog, 20, seed=seed + 1, hour=past_hour)
            invalid = workload.invalid_events(catalog, seed=seed, now=now)
            log = SendLog()
            with Progress(console=console) as progress:
                _send(pipe.ingest_targets, late1, log, progress, f"events for {past_hour:%H}:00 (commit 1)")
                time.sleep(3)
                _finalize(ep, past_hour + dt.timedelta(hours=1))  # commits generation 1 of the past hour
                half = len(main) // 2
                _send(pipe.ingest_targets[::-1], main[:half], log, progress, "workload via front-end B")
                _send(pipe.ingest_targets, main[half:], log, progress, "workload via front-end A")
                _send(pipe.ingest_targets, late2, log, progress, "late events after the commit")
                _send(pipe.ingest_targets, invalid, log, progress, "invalid events")
            bq = bigquery_client(ep)
            console.print("[bold]Waiting until BigQuery shows every acked event...")
            latencies = _wait_queryable(bq, ep, log, cats, timeout_s=120)
            _finalize(ep, now + dt.timedelta(hours=2))
            time.sleep(12)  # two loader passes: committed loads replace fresh rows
            gcs = read_committed(storage_client(ep), ep.bucket, catalog)
            bq_ids, _ = read_bigquery(bq, catalog)
            gcs_v = judge(log.acked, gcs.ids, gcs.problems)
            bq_v = judge(log.acked, bq_ids)
            expected = {e.event_id: e.expect for e in invalid}
            wrong = {i: c for i, c in expected.items() if log.rejected.get(i) != c}
            _report(console, log, invalid, gcs, bq, ep, cats, latencies, gcs_v.summary(), bq_v.summary(), wrong)
            ok = gcs_v.ok and bq_v.ok and not wrong and not log.failed and len(log.rejected) == len(invalid)
    console.print(f"[bold]{'PASS' if ok else 'FAIL'}[/]: acked = landed = queried, each once: {ok}  "
                  f"({time.monotonic() - t0:.0f}s)")  # fmt: skip
    return ok


def _report(
    console: Console,
    log: SendLog,
    invalid: list[workload.PlannedEvent],
    gcs: Any,
    bq: Any,
    ep: Endpoints,
    cats: list[str],
    latencies: dict[str, float],
    gcs_summary: str,
    bq_summary: str,
    wrong: dict[str, str],
) -> None:
    sent = len(log.sent_at)
    console.print(f"\nsent {sent}, acked {len(log.acked)}, rejected {len(log.rejected)}, failed {len(log.failed)}")
    reasons = Table(title="rejections (each reported to its client)")
    reasons.add_column("code")
    reasons.add_column("count", justify="right")
    for code, n in sorted(Counter(log.rejected.values()).items()):
        reasons.add_row(code, str(n))
    console.print(reasons)
    if wrong:
        console.print(f"[red]unexpected rejection codes: {wrong}")
    parts = Table(title="committed partitions in GCS")
    for col in ("partition", "manifests", "files", "events"):
        parts.add_column(col)
    by_part: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for m in gcs.manifests:
        by_part.setdefault((m["category"], m["partition"]), []).append(m)
    for (cat, hour), ms in sorted(by_part.items()):
        files = sum(len(m["files"]) for m in ms)
        ms.sort(key=lambda m: (m.get("shard", 0), m["generation"]))
        gens = ",".join(f"s{m['shard']}-g{m['generation']}" if "shard" in m else f"g{m['generation']}" for m in ms)
        parts.add_row(f"{cat}/{hour}", gens, str(files), str(sum(m["total_events"] for m in ms)))
    console.print(parts)
    counts = Table(title=f"BigQuery: {ep.dataset}.<category>, per hour")
    for col in ("category", "hour", "rows", "distinct event_id"):
        counts.add_column(col)
    for c in cats:
        sql = (
            f"SELECT TIMESTAMP_TRUNC(event_time, HOUR) AS h, COUNT(*), COUNT(DISTINCT event_id) "
            f"FROM `{ep.project}.{ep.dataset}.{c}` GROUP BY h ORDER BY h"
        )
        for r in bq.query(sql).result():
            counts.add_row(c, str(r[0]), str(r[1]), str(r[2]))
    console.print(counts)
    if latencies:
        vals = sorted(latencies.values())
        p50, p99 = statistics.median(vals), vals[min(len(vals) - 1, int(0.99 * len(vals)))]
        console.print(f"end-to-end latency (send -> queryable in BigQuery), {len(vals)} sampled: "
                      f"p50 {p50:.1f}s  p99 {p99:.1f}s")  # fmt: skip
    console.print(f"GCS (manifests): {gcs_summary}")
    console.print(f"BigQuery:        {bq_summary}")
