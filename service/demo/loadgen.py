"""A paced load generator: client processes that send the seeded workload through the SDK at a target rate.

Each worker process has its own ``IngestClient`` (so clients do not share the harness's GIL), sends ``rate/workers``
events per second for ``duration_s``, marks one event per ``probe_every`` with the attribute ``probe=1`` and records
its wall-clock send time. It returns its acked ids, rejections, failures and probe send times.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    """Everything the clients were told, merged over worker processes."""

    sent: int = 0
    acked: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    probes: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _worker(args: dict[str, Any], out: Any) -> None:
    import random

    from service.catalog import load_catalog
    from service.client import ClientOptions, IngestClient, RetryPolicy
    from service.demo import workload

    catalog = load_catalog(args["catalog"])
    rate, duration, probe_every = args["rate"], args["duration_s"], args["probe_every"]
    total = int(rate * duration) if rate > 0 else args["count"]
    gen = workload.events(catalog, total, seed=args["seed"], now=dt.datetime.now(dt.UTC), pad=args["pad"])
    acked: list[str] = []
    probes: dict[str, float] = {}
    opts = ClientOptions(
        max_batch_events=args["batch"],
        rpc_timeout_s=args["rpc_timeout_s"],
        retry=RetryPolicy(deadline_s=args["retry_deadline_s"]),
    )
    rng = random.Random(args["seed"])
    spread = args["spread_s"]
    t0 = time.monotonic()
    with IngestClient(args["targets"], options=opts) as client:
        for i, ev in enumerate(gen):
            if rate > 0:
                due = t0 + i / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            attrs = ev.attributes
            if i % probe_every == 0:
                attrs = {**attrs, "probe": "1"}
                probes[ev.event_id] = time.time()
            now_t = dt.datetime.now(dt.UTC) if rate > 0 else ev.event_time
            if spread > 0:
                now_t = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=rng.random() * spread)
            client.send(ev.category, ev.payload, event_time=now_t, attributes=attrs, event_id=ev.event_id)
            acked.append(ev.event_id)
        result = client.flush()
    bad = {r.event_id for r in result.rejected} | {f.event_id for f in result.failed}
    out.put(
        {
            "sent": len(acked),
            "acked": [i for i in acked if i not in bad],
            "rejected": {r.event_id: r.code for r in result.rejected},
            "failed": {f.event_id: f.grpc_code for f in result.failed},
            "probes": {k: v for k, v in probes.items() if k not in bad},
            "seconds": time.monotonic() - t0,
        }
    )


def run_load(
    targets: list[str],
    *,
    catalog: str,
    rate: float,
    duration_s: float,
    workers: int = 2,
    seed: int = 1,
    pad: int = 0,
    count: int = 0,
    batch: int = 500,
    probe_every: int = 500,
    rpc_timeout_s: float = 10.0,
    retry_deadline_s: float = 60.0,
    spread_s: float = 0.0,
) -> LoadResult:
    """Run ``workers`` client processes; ``rate`` <= 0 means "as fast as possible, ``count`` events each".

    ``spread_s`` > 0 gives event times uniformly in the last ``spread_s`` seconds (several hourly partitions).
    A timed-out call is retried on the next target, so ``rpc_timeout_s`` also sets how fast clients fail over.
    """
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = []
    for w in range(workers):
        args = {
            "targets": targets[w % len(targets) :] + targets[: w % len(targets)],
            "catalog": catalog,
            "rate": rate / workers if rate > 0 else 0,
            "duration_s": duration_s,
            "seed": seed * 1000 + w,
            "pad": pad,
            "count": count,
            "batch": batch,
            "probe_every": probe_every,
            "rpc_timeout_s": rpc_timeout_s,
            "retry_deadline_s": retry_deadline_s,
            "spread_s": spread_s,
        }
        p = ctx.Process(target=_worker, args=(args, q), daemon=True)
        p.start()
        procs.append(p)
    res = LoadResult()
    for _ in procs:
        r = q.get()
        res.sent += r["sent"]
        res.acked.update(r["acked"])
        res.rejected.update(r["rejected"])
        res.failed.update(r["failed"])
        res.probes.update(r["probes"])
        res.seconds = max(res.seconds, r["seconds"])
    for p in procs:
        p.join(timeout=30)
    return res
