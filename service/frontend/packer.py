"""``Packer``: groups accepted events into envelopes per (category, UTC event hour), bounded by bytes and latency.

Contract:
  * ``add(groups, ticket)`` and ``add_framed(groups, ticket)`` never block on I/O. Each group's events join the open
    batch of their (category, hour); a batch that reaches ``target_bytes`` is sealed at once, and any batch is sealed
    at most ``max_latency_s`` after its first event (by the flusher thread). Sealing builds an ``Envelope`` with a
    fresh UUIDv7 ``envelope_id``, encodes it with ``service.envelope.encode_serialized`` and hands it to ``submit``.
  * An envelope never mixes categories or UTC hours, so the replicator can land it verbatim as one object.
  * The ack obligation rides with the data: every batch remembers the ``Ticket`` of each request whose events it
    holds, and the ticket completes when every envelope holding its events is durable (or fails with the first error).
  * ``flush_all`` seals everything now (shutdown). Batches live in memory only: a crash loses unacked events, which is
    allowed because nothing in them was acked.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from service.client.ids import uuid7_str
from service.contract import Event
from service.envelope import EncodedEnvelope, encode_serialized
from service.frontend.metrics import Metrics
from service.frontend.wire import FramedGroup, envelope_header, framed_group

#: Per-event bytes added to its serialized size when accounting in-flight bytes (the ingest stamp, framing).
EVENT_OVERHEAD = 96


class Ticket:
    """The ack obligation of one request: done when all its envelopes are durable.

    ``on_done(error)`` (optional) is called once, from whichever thread settles the last envelope.
    """

    __slots__ = ("_error", "_event", "_lock", "_on_done", "_pending")

    def __init__(self, on_done: Callable[[BaseException | None], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._pending = 1  # a guard held by the caller of Packer.add until every batch is registered
        self._error: BaseException | None = None
        self._event = threading.Event()
        self._on_done = on_done

    def hold(self) -> None:
        with self._lock:
            self._pending += 1

    def release(self, error: BaseException | None = None) -> None:
        with self._lock:
            if error is not None and self._error is None:
                self._error = error
            self._pending -= 1
            finished = self._pending == 0
        if finished:
            self._event.set()
            if self._on_done is not None:
                self._on_done(self._error)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done; False on timeout."""
        return self._event.wait(timeout)

    @property
    def error(self) -> BaseException | None:
        return self._error


@dataclass(slots=True)
class _Batch:
    category: str
    opened: float
    chunks: list[bytes | memoryview] = field(default_factory=list)  # framed events (service.frontend.wire)
    tickets: list[Ticket] = field(default_factory=list)
    count: int = 0
    min_time: int | None = None  # event_time bounds, nanoseconds since the epoch
    max_time: int | None = None
    size: int = 0


class Packer:
    """See the module contract. Thread-safe. ``start`` launches the latency flusher; ``stop`` ends it."""

    def __init__(
        self,
        submit: Callable[[EncodedEnvelope, Callable[[BaseException | None], None]], None],
        metrics: Metrics,
        *,
        instance_id: str,
        target_bytes: int,
        max_latency_s: float,
        zstd_level: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._submit = submit
        self._metrics = metrics
        self._instance = instance_id
        self._target = target_bytes
        self._latency = max_latency_s
        self._level = zstd_level
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._open: dict[tuple[str, int], _Batch] = {}
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._flush_loop, name="packer-flusher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Seal everything and stop the flusher."""
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
        self.flush_all()

    def add(
        self,
        groups: dict[tuple[str, int], list[bytes]],
        ticket: Ticket,
        stamp: bytes = b"",
        times: dict[tuple[str, int], list[tuple[int, int]]] | None = None,
    ) -> None:
        """Queue accepted events, serialized; see ``add_framed``.

        ``stamp`` (wire bytes, see ``service.frontend.wire``) is written onto every event of this call. ``times`` are
        the events' event_time as (seconds, nanos), parallel to ``groups`` (the validator knows them; when None they
        are read from the serialized events)."""
        if times is None:
            times = {key: [_time_of(raw) for raw in events] for key, events in groups.items()}
        framed = [framed_group(*key, events, stamp, times[key]) for key, events in groups.items() if events]
        self.add_framed(framed, ticket)  # byte work outside the lock

    def add_framed(self, groups: Sequence[FramedGroup], ticket: Ticket) -> None:
        """Queue accepted events, framed and stamped; completes ``ticket``'s guard hold. Seals full batches in this
        thread. A group is split between envelopes only at event boundaries (``FramedGroup.ends``)."""
        sealed: list[_Batch] = []
        now = self._clock()
        with self._lock:
            for g in groups:
                key = (g.category, g.hour)
                ends = g.ends
                start = 0
                while start < g.count:
                    batch = self._open.get(key)
                    if batch is None:
                        batch = self._open[key] = _Batch(key[0], now)
                        self._wake.notify()
                    # Take events until this batch reaches the byte target (an envelope may exceed it by one event).
                    base = ends[start - 1] if start else 0
                    end = min(bisect_left(ends, base + self._target - batch.size, start) + 1, g.count)
                    if start == 0 and end == g.count:
                        batch.chunks.append(g.data)
                        lo, hi = g.min_time, g.max_time
                    else:
                        batch.chunks.append(memoryview(g.data)[base : ends[end - 1]])
                        lo, hi = min(g.times[start:end]), max(g.times[start:end])
                    batch.count += end - start
                    batch.min_time = lo if batch.min_time is None else min(batch.min_time, lo)
                    batch.max_time = hi if batch.max_time is None else max(batch.max_time, hi)
                    batch.size += ends[end - 1] - base
                    start = end
                    if not batch.tickets or batch.tickets[-1] is not ticket:
                        ticket.hold()
                        batch.tickets.append(ticket)
                    if batch.size >= self._target or self._stop:  # after stop no flusher runs: seal now
                        sealed.append(self._open.pop(key))
        ticket.release()
        for batch in sealed:
            self._seal(batch)

    def flush_all(self) -> None:
        with self._lock:
            batches = list(self._open.values())
            self._open.clear()
        for batch in batches:
            self._seal(batch)

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                if self._stop:
                    return
                now = self._clock()
                due = [k for k, b in self._open.items() if now - b.opened >= self._latency]
                batches = [self._open.pop(k) for k in due]
                if not batches:
                    oldest = min((b.opened for b in self._open.values()), default=None)
                    timeout = None if oldest is None else max(0.0, oldest + self._latency - now)
                    self._wake.wait(timeout)
                    continue
            for batch in batches:
                self._seal(batch)

    def _seal(self, batch: _Batch) -> None:
        tickets = batch.tickets
        try:
            envelope_id = uuid7_str()
            created_ns = int(self._wall() * 1e9)
            head = envelope_header(envelope_id, batch.category, self._instance, *divmod(created_ns, 1_000_000_000))
            encoded = encode_serialized(
                b"".join([head, *batch.chunks]),
                envelope_id=envelope_id,
                category=batch.category,
                event_count=batch.count,
                min_event_micros=(batch.min_time or 0) // 1000,
                max_event_micros=(batch.max_time or 0) // 1000,
                level=self._level,
            )
        except Exception as exc:  # cannot happen for validated events; never leave tickets hanging
            for t in tickets:
                t.release(exc)
            return
        m = self._metrics
        m.envelope_bytes.labels(batch.category).observe(len(encoded.data))
        m.envelope_raw_bytes.observe(int(encoded.attributes["uncompressed_bytes"]))
        m.envelope_events.observe(encoded.event_count)

        def done(error: BaseException | None) -> None:
            for t in tickets:
                t.release(error)

        self._submit(encoded, done)


def _time_of(serialized_event: bytes) -> tuple[int, int]:
    ts = Event.FromString(serialized_event).event_time
    return ts.seconds, ts.nanos
