"""Prometheus metrics of the BigQuery loader, and a bounded sample of freshness latencies for p50/p99 reports.

Names (docs/bigquery.md, "Metrics"):
  logpipe_bq_loads_total{kind,outcome}          kind: commit|fresh; outcome: loaded|already_loaded|failed
  logpipe_bq_job_failures_total{kind,reason}    failed load jobs (each attempt), by BigQuery error reason
  logpipe_bq_load_seconds{kind}                 submit -> DONE of one load
  logpipe_bq_fresh_latency_seconds{since}       since=ingest: front-end ack -> queryable; since=landed: staging
                                                object created -> queryable (the loader's own share)
  logpipe_bq_commit_latency_seconds             manifest created -> its rows queryable from the committed table
  logpipe_bq_pending{kind}                      loads found but not yet done at the end of a cycle
  logpipe_bq_fresh_paused{tier}                 1 while the fresh path cuts no new batch (BatchLimits)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)


class LatencySample:
    """The last ``size`` observations (bounded memory), for percentiles in reports and tests. Thread-safe."""

    def __init__(self, size: int = 200_000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def extend(self, values: Iterable[float]) -> None:
        with self._lock:
            self._values.extend(values)

    def percentile(self, q: float) -> float | None:
        """The ``q``-quantile (0..1, nearest rank) of the sample, or None when empty."""
        with self._lock:
            vals = sorted(self._values)
        if not vals:
            return None
        return vals[min(len(vals) - 1, max(0, round(q * len(vals)) - 1))]

    def __len__(self) -> int:
        return len(self._values)


class LoaderMetrics:
    """The loader's metrics in their own registry (tests build many)."""

    def __init__(self, registry: CollectorRegistry | None = None, sample_size: int = 200_000) -> None:
        r = self.registry = registry or CollectorRegistry()
        p = "logpipe_bq_"
        self.loads = Counter(p + "loads", "Loads finished, by outcome", ["kind", "outcome"], registry=r)
        self.job_failures = Counter(p + "job_failures", "Failed load jobs, by reason", ["kind", "reason"], registry=r)
        self.load_seconds = Histogram(
            p + "load_seconds", "Submit to DONE of one load", ["kind"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.fresh_latency = Histogram(
            p + "fresh_latency_seconds",
            "Event ack/landing to queryable",
            ["since"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            p + "commit_latency_seconds", "Manifest created to loaded", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.pending = Gauge(p + "pending", "Loads not done at the end of a cycle", ["kind"], registry=r)
        self.fresh_paused = Gauge(
            p + "fresh_paused", "1 while the fresh path cuts no batch (too many unloaded)", ["tier"], registry=r
        )
        self.ingest_to_queryable = LatencySample(sample_size)
        self.landed_to_queryable = LatencySample(sample_size)
