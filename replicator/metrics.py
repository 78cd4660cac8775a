"""Prometheus metrics of one replicator process (names documented in docs/design.md, "Metrics").

Each ``Metrics`` owns its registry, so tests can build many; ``serve(port)`` exposes it over HTTP on 127.0.0.1
unless ``host`` says otherwise.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    """Counters and gauges of landing and finalization. Cheap to update from any thread."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "logpipe_replicator_"

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(p + name, doc, list(labels), registry=r)

        self.events_landed = Counter(
            p + "events_landed", "Events in newly landed staging objects", ["category"], registry=r
        )
        self.bytes_landed = Counter(
            p + "bytes_landed", "Bytes of newly landed staging objects", ["category"], registry=r
        )
        self.messages_acked = counter("messages_acked", "Pub/Sub messages acked after landing")
        self.objects_written = counter("objects_written", "Objects created", ("kind",))
        self.objects_existing = Counter(
            p + "objects_existing", "Creates answered 'already exists'", ["kind"], registry=r
        )
        self.commit_seconds = Histogram(
            p + "commit_seconds",
            "Time to finalize one partition generation",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=r,
        )
        self.commits = counter("commits", "Manifests committed", ("category",))
        self.duplicates_dropped = Counter(
            p + "duplicates_dropped", "Events dropped as duplicates", ["category"], registry=r
        )
        self.misplaced_events = counter(
            "misplaced_events", "Committed events outside their partition's hour", ("category",)
        )
        self.unconvertible_events = counter(
            "unconvertible_events",
            "Events of consumed staging objects not committed: no valid row (listed in the manifest's rejected)",
            ("category", "reason"),
        )
        self.dead_lettered = Counter(
            p + "dead_lettered", "Messages sent to the dead-letter topic", ["reason"], registry=r
        )
        self.land_errors = counter("land_errors", "Messages nacked after a store error", ("kind",))
        self.finalize_errors = counter("finalize_errors", "Finalization passes that failed", ("kind",))
        self.finalize_claims = counter(
            "finalize_claims",
            "Partition claims: acquired, taken_over (an expired claim), held_elsewhere (skipped), lost (renewal)",
            ("outcome",),
        )
        self.retries = counter("retries", "Transient store errors retried", ("op",))
        self.oldest_unacked_age = Gauge(
            p + "oldest_unacked_age_seconds", "Age (since publish) of the oldest message held unacked", registry=r
        )
        self.in_flight = Gauge(
            p + "in_flight_messages", "Messages held: queued for a landing thread or landing, not yet acked", registry=r
        )

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose the metrics on ``http://host:port/metrics`` from a daemon thread. ``port`` 0 means do nothing."""
        if port:
            start_http_server(port, addr=host, registry=self.registry)
