"""Baseline for ``logpipe bench ingest``: what a user does without logpipe, one Pub/Sub message per event.

Publishes ``size``-byte JSON events with google-cloud-pubsub's default batching for ``seconds`` and waits for every
future. Ack latency = time from ``publish()`` to the future resolving. Prints one JSON object like ``loadgen``.
``python -m service.bench.direct --pubsub-host H:P --project P --topic T --size 1024 --seconds 5``
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import grpc
from google.cloud import pubsub_v1
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

from service.bench.loadgen import payload_of, pct


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pubsub-host", required=True)
    p.add_argument("--project", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    client = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(args.pubsub_host))
    )
    topic = client.topic_path(args.project, args.topic)
    latencies: list[float] = []
    lock = threading.Lock()
    payload = payload_of(args.size, 0)
    futures = []
    t0 = time.perf_counter()
    deadline = t0 + args.seconds
    n = 0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        fut = client.publish(topic, payload, category="app_log")

        def done(_f: object, start: float = start) -> None:
            with lock:
                latencies.append(time.perf_counter() - start)

        fut.add_done_callback(done)
        futures.append(fut)
        n += 1
        if len(futures) >= 20_000:  # keep memory bounded; the client's own flow control is off by default
            for f in futures:
                f.result(timeout=60)
            futures.clear()
    for f in futures:
        f.result(timeout=60)
    elapsed = time.perf_counter() - t0
    client.stop()
    print(json.dumps({
        "events": n, "seconds": elapsed, "events_per_s": n / elapsed, "mb_per_s": n * args.size / elapsed / 1e6,
        "p50_ms": pct(latencies, 0.5) * 1000, "p99_ms": pct(latencies, 0.99) * 1000, "calls": n, "errors": {},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
