"""Prometheus metrics of one front-end, in their own registry (so tests and several servers never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SIZE_BUCKETS = tuple(float(2**k) for k in range(10, 25))  # 1 KiB .. 16 MiB
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """All front-end metrics. Construct once per server and inject; never global."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_accepted = Counter("logpipe_events_accepted", "Events accepted", ["category"], registry=r)
        self.events_rejected = Counter("logpipe_events_rejected", "Events rejected", ["reason"], registry=r)
        self.requests = Counter("logpipe_requests", "Ingest requests by outcome", ["method", "code"], registry=r)
        self.envelope_bytes = Histogram(
            "logpipe_envelope_bytes", "Compressed envelope size", ["category"], buckets=_SIZE_BUCKETS, registry=r
        )
        self.envelope_raw_bytes = Histogram(
            "logpipe_envelope_uncompressed_bytes", "Uncompressed envelope size", buckets=_SIZE_BUCKETS, registry=r
        )
        self.envelope_events = Histogram(
            "logpipe_envelope_events", "Events per envelope", buckets=(1, 10, 100, 1000, 10_000, 100_000), registry=r
        )
        self.publish_latency = Histogram(
            "logpipe_publish_latency_seconds", "Time until Pub/Sub confirmed", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.publish_failures = Counter("logpipe_publish_failures", "Publishes failed or timed out", registry=r)
        self.envelopes_spooled = Counter("logpipe_envelopes_spooled", "Envelopes written to the spool", registry=r)
        self.envelopes_replayed = Counter("logpipe_envelopes_replayed", "Spooled envelopes published", registry=r)
        self.replay_errors = Counter(
            "logpipe_replay_errors", "Spool replay steps that failed on local I/O (then retried)", ["stage"], registry=r
        )
        self.spool_quarantined = Counter(
            "logpipe_spool_quarantined", "Spool files moved aside, never to be replayed", ["reason"], registry=r
        )
        self.spool_depth = Gauge("logpipe_spool_depth", "Envelopes in the spool", registry=r)
        self.spool_bytes = Gauge("logpipe_spool_bytes", "Bytes in the spool", registry=r)
        self.inflight_bytes = Gauge("logpipe_inflight_bytes", "Accepted bytes not yet durable", registry=r)
        self.backpressure = Counter("logpipe_backpressure", "Requests refused with RESOURCE_EXHAUSTED", registry=r)
