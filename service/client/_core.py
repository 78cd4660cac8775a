"""Parts shared by the sync and async clients: options, the batching state machine, targets with failover, and the
ledger of outcomes. The clients differ only in how they wait (threads or asyncio) and call (grpc or grpc.aio)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from service.client.events import MAX_PAYLOAD_BYTES
from service.client.results import Failure, FlushResult, Rejection
from service.client.retry import RetryPolicy
from service.contract import Event, PublishResponse, StatusCode

log = logging.getLogger("service.client")

#: Receives each rejection or failure as it happens (from a background thread / task). Must not block.
Callback = Callable[[Rejection | Failure], None]


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


class Outstanding:
    """Which sent events are not settled yet, by send order. Callers hold their own lock around every call.

    ``flush`` must wait for events sent *before* it, even while other threads keep sending: it waits until the
    oldest unsettled event (buffered, or in an in-flight batch) was sent at or after its mark.
    """

    def __init__(self) -> None:
        self.enqueued = 0  # events ever buffered; the next one gets this sequence number
        self._batches: dict[int, int] = {}  # first sequence of an in-flight batch -> how many such batches

    def oldest(self, buffered: int) -> int:
        """Sequence of the oldest unsettled event (``enqueued`` when none)."""
        lo = self.enqueued - buffered
        return min(lo, min(self._batches)) if self._batches else lo

    def started(self, first: int) -> None:
        self._batches[first] = self._batches.get(first, 0) + 1

    def finished(self, first: int) -> None:
        left = self._batches[first] - 1
        if left:
            self._batches[first] = left
        else:
            del self._batches[first]


#: Bytes an event adds to a request on top of its own serialized size (field tag and length prefix).
EVENT_FRAMING = 6


def event_size(event: Event) -> int:
    """What ``event`` adds to a ``PublishRequest``, in bytes."""
    return event.ByteSize() + EVENT_FRAMING


class Batcher:
    """The buffer and its batching rules, shared by both clients. Not thread-safe: callers hold their own lock
    (``threading.Condition`` or ``asyncio.Condition``) around every call and wake waiters when a method says so."""

    def __init__(self, options: ClientOptions) -> None:
        self._opts = options
        self._buffer: deque[tuple[Event, int]] = deque()  # (event, event_size)
        self._bytes = 0
        self._oldest = 0.0
        self._flush_upto = 0
        self.outstanding = 0  # buffered + in flight
        self.progress = Outstanding()

    @property
    def full(self) -> bool:
        """True when ``max_buffer_events`` events are buffered or in flight (``send`` must block or raise)."""
        return self.outstanding >= self._opts.max_buffer_events

    def add(self, event: Event) -> bool:
        """Buffer ``event``; True when a full batch is now ready (wake the batcher)."""
        if not self._buffer:
            self._oldest = time.monotonic()
        size = event_size(event)
        self._buffer.append((event, size))
        self._bytes += size
        self.outstanding += 1
        self.progress.enqueued += 1
        return len(self._buffer) >= self._opts.max_batch_events or self._bytes >= self._opts.max_batch_bytes

    def mark_flush(self) -> int:
        """Ask for everything buffered now to be sent; returns the mark ``settled`` waits for."""
        upto = self.progress.enqueued
        self._flush_upto = max(self._flush_upto, upto)
        return upto

    def settled(self, upto: int) -> bool:
        """Every event buffered before mark ``upto`` is acked, rejected or failed."""
        return self.progress.oldest(len(self._buffer)) >= upto

    @property
    def empty(self) -> bool:
        return not self._buffer

    def due(self, closed: bool) -> bool:
        """A batch should be sent now (a bound is reached, a flush or close asks for it, or it is old enough)."""
        opts = self._opts
        return bool(self._buffer) and (
            len(self._buffer) >= opts.max_batch_events
            or self._bytes >= opts.max_batch_bytes
            or self._flush_upto > self.progress.enqueued - len(self._buffer)
            or closed
            or time.monotonic() - self._oldest >= opts.max_latency_s
        )

    def wait_seconds(self) -> float:
        """How long the batcher may sleep before the oldest buffered event reaches ``max_latency_s``."""
        return max(0.0, self._oldest + self._opts.max_latency_s - time.monotonic())

    def take(self) -> tuple[int, list[Event]]:
        """Remove the next batch (call only when ``due``); returns (sequence of its first event, events)."""
        opts = self._opts
        first = self.progress.enqueued - len(self._buffer)
        self.progress.started(first)
        batch: list[Event] = []
        size = 0
        while self._buffer and len(batch) < opts.max_batch_events:
            e, n = self._buffer[0]
            if batch and size + n > opts.max_batch_bytes:
                break  # a batch exceeds max_batch_bytes only as one event alone
            self._buffer.popleft()
            batch.append(e)
            size += n
        self._bytes -= size
        self._oldest = time.monotonic()
        return first, batch

    def finished(self, first: int, count: int) -> None:
        """The batch starting at ``first`` with ``count`` events is settled (wake flush and blocked senders)."""
        self.outstanding -= count
        self.progress.finished(first)


def parse_targets(target: str | Sequence[str]) -> tuple[str, ...]:
    """``"h1:p1,h2:p2"`` or a list -> a non-empty tuple of ``host:port``. Raises ``ValueError``."""
    items = target.split(",") if isinstance(target, str) else list(target)
    out = tuple(t.strip() for t in items if t and t.strip())
    if not out:
        raise ValueError("at least one target host:port is required")
    return out


class Targets:
    """Failover order and the shared preferred target, where each delivery starts. Thread-safe.

    Each delivery walks the list with its own ``Cursor`` (the next target after the one that failed for *that*
    batch), so many batches failing at once cannot send each other back to the target they just left. The preferred
    target moves on only while it still points at a target that failed.
    """

    def __init__(self, targets: Sequence[str]) -> None:
        self.all = tuple(targets)
        self._preferred = 0
        self._lock = threading.Lock()

    @property
    def preferred(self) -> int:
        return self._preferred

    def cursor(self) -> Cursor:
        return Cursor(self)

    def failed(self, index: int) -> int:
        """Target ``index`` failed one attempt; returns the next one to try for that batch."""
        nxt = (index + 1) % len(self.all)
        with self._lock:
            if self._preferred == index:
                self._preferred = nxt
        return nxt


class Cursor:
    """One delivery's position in the failover order: ``index`` until ``advance`` (tenacity's ``before_sleep``)."""

    def __init__(self, targets: Targets) -> None:
        self._targets = targets
        self.index = targets.preferred

    def advance(self, *_: object) -> None:
        self.index = self._targets.failed(self.index)


def credentials(tls: bool | grpc.ChannelCredentials, root_certificates: bytes | None) -> grpc.ChannelCredentials | None:
    """None for plaintext; TLS credentials otherwise (``root_certificates`` overrides the system roots)."""
    if tls is False:
        return None
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)


CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class Ledger:
    """Accumulates outcomes until ``take``; calls ``callback`` for each rejection/failure. Thread-safe.

    Lists at most ``max_listed`` rejections + failures between two ``take`` calls and counts the rest (G4). An
    exception raised by ``callback`` is logged and does not change any event's outcome."""

    def __init__(self, callback: Callback | None, max_listed: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._max_listed = max_listed
        self._accepted = 0
        self._rejected: list[Rejection] = []
        self._failed: list[Failure] = []
        self._rejected_more = 0
        self._failed_more = 0
        self._callback = callback

    def record_response(self, events: Sequence[Event], response: PublishResponse) -> None:
        """Count accepted events and collect rejections; works with full and compact (rejections-only) responses."""
        rejected: list[Rejection] = []
        for s in response.statuses:
            if s.code != StatusCode.ACCEPTED and s.index < len(events):
                e = events[s.index]
                rejected.append(Rejection(e.event_id, e.category, StatusCode.Name(s.code), s.message))
        failed: list[Failure] = []
        if response.accepted + response.rejected != len(events):
            failed = [Failure(e.event_id, e.category, "UNKNOWN", "the response does not account for every event")
                      for e in events]  # fmt: skip
            self._add(0, [], failed)
            return
        self._add(response.accepted, rejected, failed)

    def record_failure(self, events: Sequence[Event], exc: BaseException) -> None:
        code = exc.code().name if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else type(exc).__name__
        details = exc.details() if isinstance(exc, grpc.RpcError) and hasattr(exc, "details") else str(exc)
        self._add(0, [], [Failure(e.event_id, e.category, code, str(details)) for e in events])

    def _add(self, accepted: int, rejected: list[Rejection], failed: list[Failure]) -> None:
        with self._lock:
            self._accepted += accepted
            room = max(0, self._max_listed - len(self._rejected) - len(self._failed))
            self._rejected.extend(rejected[:room])
            self._rejected_more += max(0, len(rejected) - room)
            room = max(0, room - len(rejected))
            self._failed.extend(failed[:room])
            self._failed_more += max(0, len(failed) - room)
        if self._callback is not None:
            self._notify([*rejected, *failed])

    def _notify(self, items: list[Rejection | Failure]) -> None:
        assert self._callback is not None
        errors = 0
        first: Exception | None = None
        for item in items:
            try:
                self._callback(item)
            except Exception as exc:  # the user's callback must not change outcomes or stop the client
                errors += 1
                first = first or exc
        if first is not None:
            log.error("on_rejected raised for %d of %d outcomes (they are still reported by flush)", errors,
                      len(items), exc_info=first)  # fmt: skip

    def take(self) -> FlushResult:
        with self._lock:
            result = FlushResult(self._accepted, self._rejected, self._failed, self._rejected_more, self._failed_more)
            self._accepted, self._rejected, self._failed = 0, [], []
            self._rejected_more = self._failed_more = 0
        return result
