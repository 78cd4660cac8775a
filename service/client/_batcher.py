"""The batching state machine shared by the sync and async clients: the buffer, when a batch is due, and which sent
events are not settled yet (for ``flush``). The clients differ only in how they wait (threads or asyncio) and call
(grpc or grpc.aio)."""

from __future__ import annotations

import time
from collections import deque

from service.client._options import ClientOptions
from service.contract import Event


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
