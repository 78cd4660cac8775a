"""``ClientOptions``: the batching, buffering, concurrency and retry bounds both clients read once at construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from service.client.events import MAX_PAYLOAD_BYTES
from service.client.retry import RetryPolicy


@dataclass(frozen=True)
class ClientOptions:
    """Batching and bounds. Sizes in bytes, times in seconds.

    Attributes:
        max_batch_events / max_batch_bytes / max_latency_s: A batch is sent when any bound is reached. A batch never
            holds more than ``max_batch_bytes`` (serialized events), except a single larger event sent alone.
        max_payload_bytes: ``send`` raises ``InvalidEvent`` for a larger payload. The default is the front-end's
            ``max_payload_bytes`` default (1 MiB); raise both together.
        max_buffer_events: Events buffered or in flight; past it ``send`` blocks (``block_when_full``) or raises
            ``BufferFull``.
        block_timeout_s: How long a blocked ``send`` waits before raising ``BufferFull`` (None: forever).
        max_in_flight: Concurrent Publish calls. A call is answered once its envelopes are durable, which at low
            rates takes the front-end's envelope latency bound (500 ms by default), so 16 calls of 500 events keep one
            client at about 14k events/s even then.
        rpc_timeout_s: Deadline of one attempt; after it the retry may go to another target.
        retry: The retry policy (whole-batch deadline, backoff).
        max_listed_outcomes: Rejections + failures a ``FlushResult`` lists; more are only counted (G4).
        exit_flush_timeout_s: At interpreter exit, an unclosed ``IngestClient`` flushes for at most this long, then
            logs (ERROR) how many events it could not deliver.
    """

    max_batch_events: int = 500
    max_batch_bytes: int = 4 * 1024 * 1024
    max_latency_s: float = 0.05
    max_buffer_events: int = 100_000
    block_when_full: bool = True
    block_timeout_s: float | None = None
    max_in_flight: int = 16
    rpc_timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    max_listed_outcomes: int = 10_000
    exit_flush_timeout_s: float = 10.0
