"""Load generator for ``logpipe bench ingest``, run as its own process so it does not share the server's GIL.

It pre-serializes a ring of distinct requests (fresh UUIDv7 ids, 1 KiB or 200 B JSON payloads, event_time now) and
sends the bytes as they are, so the client's own cost is close to zero. ``unary``: ``concurrency`` tasks each calling
``Publish`` in a loop. ``stream``: ``concurrency`` ``PublishStream`` calls, each keeping ``window`` requests unanswered.
Prints one JSON object: events, bytes, seconds, per-call ack latencies (p50/p99 in ms), errors by code.

``python -m service.bench.loadgen --target H:P --mode unary --batch 1000 --size 1024 --seconds 5``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import grpc.aio

from service.client.ids import uuid7_str
from service.contract import PublishRequest, PublishResponse
from service.frontend.wire import varint

PUBLISH = "/logpipe.v1.Ingest/Publish"
STREAM = "/logpipe.v1.Ingest/PublishStream"


_WORDS = (
    "user",
    "request",
    "served",
    "cache",
    "miss",
    "hit",
    "latency",
    "checkout",
    "cart",
    "session",
    "login",
    "timeout",
    "retry",
    "upstream",
    "region",
    "error",
    "ok",
    "payment",
    "search",
    "page",
    "render",
    "db",
)


def payload_of(size: int, i: int) -> bytes:
    """A log-like JSON object of exactly ``size`` bytes (>= 80): fixed keys, pseudo-random ids and words, so it
    compresses like real logs (about 4-6x with zstd), not like padding."""
    rnd = random.Random(i)
    head = (f'{{"level":"{rnd.choice(("info", "warn", "error"))}","service":"svc-{rnd.randrange(50)}","seq":{i},'
            f'"user_id":"{rnd.getrandbits(48):012x}","latency_ms":{rnd.random() * 200:.3f},"msg":"')  # fmt: skip
    room = max(0, size - len(head) - 2)
    words: list[str] = []
    n = 0
    while n < room:
        w = rnd.choice(_WORDS) if rnd.random() < 0.8 else f"{rnd.getrandbits(32):08x}"
        words.append(w)
        n += len(w) + 1
    return (head + " ".join(words)[:room].ljust(room) + '"}').encode()


def make_requests(n: int, batch: int, size: int, category: str) -> list[bytes]:
    now = time.time()
    out = []
    for r in range(n):
        req = PublishRequest(sequence=r, omit_accepted_statuses=True)
        for i in range(batch):
            e = req.events.add(event_id=uuid7_str(), category=category, payload=payload_of(size, r * batch + i))
            e.event_time.FromNanoseconds(int(now * 1e9))
        out.append(req.SerializeToString())
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    ring = make_requests(max(4, min(64, 200_000 // args.batch)), args.batch, args.size, args.category)
    options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
    channels = [grpc.aio.insecure_channel(args.target, options=options) for _ in range(args.channels)]
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    acked = 0
    acked_total = 0  # including the warm-up: what the server did while its CPU time was measured
    deadline = time.perf_counter() + args.seconds
    warm_until = time.perf_counter() + args.warmup

    async def unary(k: int) -> None:
        nonlocal acked, acked_total
        call = channels[k % len(channels)].unary_unary(
            PUBLISH, request_serializer=None, response_deserializer=PublishResponse.FromString
        )
        i = k
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                resp = await call(ring[i % len(ring)], timeout=30)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                await asyncio.sleep(0.05)
                continue
            acked_total += resp.accepted
            if t0 >= warm_until:
                latencies.append(time.perf_counter() - t0)
                acked += resp.accepted
            i += 1

    async def stream(k: int) -> None:
        nonlocal acked, acked_total
        call = channels[k % len(channels)].stream_stream(
            STREAM, request_serializer=None, response_deserializer=PublishResponse.FromString
        )
        sent_at: dict[int, float] = {}
        window = asyncio.Semaphore(args.window)

        async def requests() -> AsyncIterator[bytes]:
            i = 0
            while time.perf_counter() < deadline:
                await window.acquire()
                sent_at[i] = time.perf_counter()
                # A scalar field repeated on the wire: the last value wins, so this sets sequence without re-encoding.
                yield ring[(k + i) % len(ring)] + b"\x10" + varint(i)
                i += 1

        try:
            async for resp in call(requests(), timeout=args.seconds + 60):
                t0 = sent_at.pop(resp.sequence)
                acked_total += resp.accepted
                if t0 >= warm_until:
                    latencies.append(time.perf_counter() - t0)
                    acked += resp.accepted
                window.release()
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1

    worker = unary if args.mode == "unary" else stream
    t_start = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(args.concurrency)))
    elapsed = time.perf_counter() - max(t_start + args.warmup, t_start)
    for ch in channels:
        await ch.close(None)
    return {
        "events": acked,
        "events_total": acked_total,
        "seconds": elapsed,
        "events_per_s": acked / elapsed if elapsed > 0 else 0.0,
        "mb_per_s": acked * args.size / elapsed / 1e6 if elapsed > 0 else 0.0,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p99_ms": pct(latencies, 0.99) * 1000,
        "calls": len(latencies),
        "errors": dict(errors),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--mode", choices=["unary", "stream"], default="unary")
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--category", default="app_log")
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
