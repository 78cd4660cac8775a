"""``IngestClient``: the blocking SDK. Batches in a background thread, retries with failover, reports every outcome.

Contract:
  * ``send`` returns the event's id (a UUIDv7 unless given) once the event is buffered. It blocks while the bounded
    buffer is full (or raises ``BufferFull``, as configured). It never does network I/O itself.
  * Every event is buffered with its ``event_id`` and ``event_time`` set (the send time unless given), fixed before
    the first attempt: retries resend the identical event, so it lands in one hourly partition (G2).
  * Batches are sent when ``max_batch_events``/``max_batch_bytes`` is reached or ``max_latency_s`` after the first
    event, with at most ``max_in_flight`` calls at once. Retries follow ``service.client.retry`` (retryable codes
    only, RetryInfo honoured, bounded in time); each retry goes to the next target, so a front-end that timed out is
    not asked again first.
  * ``flush`` blocks until every event sent before it is acked, rejected or failed, and returns those outcomes
    (each outcome is returned by exactly one ``flush``). Nothing is dropped silently.
  * ``close`` (and leaving the ``with`` block) stops accepting events (``send`` raises ``ClientClosed``, also in a
    sender blocked on a full buffer), flushes, then closes the channels. Call it before the process exits.
  * A client not closed by interpreter exit (after non-daemon threads ended, as an ``atexit`` handler that runs
    after those registered later than ``import service.client``) flushes for at most
    ``ClientOptions.exit_flush_timeout_s`` and logs what it could not deliver (ERROR) or whose outcome nobody got.
    Past that bound, events still buffered or in flight are lost with the process: only ``close`` returns outcomes.

Threads: one daemon batcher thread, and one daemon thread per Publish call in flight (at most ``max_in_flight``).
Deliveries start their own threads rather than use a ``ThreadPoolExecutor``, which refuses work once interpreter
shutdown begins; if even a thread cannot be started, the batcher delivers the batch itself.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from service.client._batcher import Batcher
from service.client._ledger import Callback, Ledger
from service.client._options import ClientOptions
from service.client._targets import CHANNEL_OPTIONS, Targets, credentials, metadata, parse_targets
from service.client.errors import BufferFull, ClientClosed
from service.client.events import check_payload_size, fill_defaults, make_event
from service.client.results import FlushResult
from service.client.retry import retrying
from service.contract import Event, PublishRequest, PublishResponse, ingest_pb2_grpc

log = logging.getLogger("service.client")

#: Started clients not closed yet: flushed (bounded) by ``_flush_at_exit``.
_unclosed: weakref.WeakSet[IngestClient] = weakref.WeakSet()


class IngestClient:
    """Blocking client. Args: ``target`` ``host:port``, a comma-separated list, or a sequence (failover order);
    ``token`` bearer token; ``tls`` False, True (system roots or ``root_certificates``) or channel credentials;
    ``on_rejected`` optional callback per rejection/failure."""

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        root_certificates: bytes | None = None,
        options: ClientOptions | None = None,
        on_rejected: Callback | None = None,
    ) -> None:
        self.options = options or ClientOptions()
        self._targets = Targets(parse_targets(target))
        self._creds = credentials(tls, root_certificates)
        self._metadata = metadata(token)
        self._ledger = Ledger(on_rejected, self.options.max_listed_outcomes)
        self._cv = threading.Condition()
        self._batcher = Batcher(self.options)
        self._closed = False
        self._stubs: dict[int, tuple[grpc.Channel, Any]] = {}
        self._stub_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._slots = threading.BoundedSemaphore(self.options.max_in_flight)

    # --- public API ----------------------------------------------------------------------------------------------
    def send(
        self,
        category: str,
        payload: Any,
        *,
        event_time: Any = None,
        attributes: Mapping[str, str] | None = None,
        event_id: str | None = None,
        producer: str = "",
    ) -> str:
        """Buffer one event; returns its id. Raises ``BufferFull``, ``ClientClosed``, ``InvalidEvent`` (a payload
        over ``max_payload_bytes``, a bad ``event_time``, non-string attributes, ...)."""
        event = make_event(category, payload, event_time=event_time, attributes=attributes, event_id=event_id,
                           producer=producer, max_payload_bytes=self.options.max_payload_bytes)  # fmt: skip
        self._enqueue(event)
        return event.event_id

    def send_event(self, event: Event) -> None:
        """Buffer a ready-made ``Event``. An empty ``event_id`` or unset ``event_time`` is filled here, in place and
        once (``fill_defaults``), so every retry resends the same values. Raises ``BufferFull``, ``ClientClosed``,
        ``InvalidEvent`` (a payload over ``max_payload_bytes``)."""
        fill_defaults(event)
        check_payload_size(event, self.options.max_payload_bytes)
        self._enqueue(event)

    def _enqueue(self, event: Event) -> None:
        opts = self.options
        with self._cv:
            if self._closed:
                raise ClientClosed("client is closed")
            b = self._batcher
            if b.full:
                if not opts.block_when_full:
                    raise BufferFull(f"{b.outstanding} events buffered or in flight (max_buffer_events)")
                if not self._cv.wait_for(lambda: not b.full or self._closed, opts.block_timeout_s):
                    raise BufferFull(f"buffer still full after {opts.block_timeout_s}s")
                if self._closed:
                    raise ClientClosed("client was closed while send waited for buffer space")
            self._ensure_started()
            if b.add(event):
                self._cv.notify_all()

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Send everything buffered and wait for every earlier event's outcome. Raises ``TimeoutError``."""
        with self._cv:
            upto = self._batcher.mark_flush()
            self._cv.notify_all()
            if not self._cv.wait_for(lambda: self._batcher.settled(upto), timeout):
                raise TimeoutError(f"events sent before flush still unsettled after {timeout}s")
        return self._ledger.take()

    def close(self) -> FlushResult:
        """Stop accepting events, flush, stop the background thread and close channels. Blocks until every event is
        settled (bounded by the retry deadline). Returns every outcome not yet returned by ``flush``. Idempotent."""
        with self._cv:
            self._closed = True  # first: no send gets in after the final flush, so it returns every outcome
            self._cv.notify_all()
        result = self.flush()
        if self._thread is not None:
            self._thread.join()
        _unclosed.discard(self)
        for channel, _ in self._stubs.values():
            channel.close()
        self._stubs.clear()
        return result

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- background ----------------------------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._thread is None:
            thread = threading.Thread(target=self._batch_loop, name="logpipe-batcher", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # too late in interpreter shutdown
                raise ClientClosed(f"cannot start the batcher thread: {exc}") from None
            self._thread = thread
            _unclosed.add(self)

    def _flush_at_exit(self) -> None:
        """Interpreter exit without ``close``: a bounded flush, then log what was lost or never returned."""
        timeout = self.options.exit_flush_timeout_s
        with self._cv:
            if self._closed:
                return
        try:
            result = self.flush(timeout=timeout)
        except TimeoutError:
            with self._cv:
                self._closed = True
                left = self._batcher.outstanding
                self._cv.notify_all()
            result = self._ledger.take()
            log.error("IngestClient was not closed before interpreter exit: %d events buffered or in flight were "
                      "NOT delivered within exit_flush_timeout_s=%ss (%d accepted, %d rejected, %d failed in that "
                      "time); call close() before exiting", left, timeout, result.accepted, result.rejected_count,
                      result.failed_count)  # fmt: skip
            return
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if result == FlushResult():
            return  # nothing was pending and every outcome was returned: nothing to report
        level = logging.WARNING if result.ok else logging.ERROR
        log.log(level, "IngestClient was not closed before interpreter exit; flushed at exit: %d accepted, "
                "%d rejected, %d failed (outcomes only close() returns); call close() before exiting",
                result.accepted, result.rejected_count, result.failed_count)  # fmt: skip

    def _take_batch(self) -> tuple[int, list[Event]] | None:
        """Wait (holding the condition) until a batch is due; None when closed and empty."""
        while True:
            if self._batcher.due(self._closed):
                return self._batcher.take()
            if self._batcher.empty:
                if self._closed:
                    return None
                self._cv.wait()
            else:
                self._cv.wait(self._batcher.wait_seconds())

    def _batch_loop(self) -> None:
        while True:
            self._slots.acquire()
            with self._cv:
                taken = self._take_batch()
            if taken is None:
                self._slots.release()
                return
            first, batch = taken
            try:
                thread = threading.Thread(target=self._deliver, args=taken, name="logpipe-send", daemon=True)
                thread.start()
            except RuntimeError:  # no new threads late in interpreter shutdown: deliver from this thread
                self._deliver(first, batch)
            except BaseException as exc:  # the batch fails with the reason; flush and close never wait for it
                self._ledger.record_failure(batch, exc)
                self._finished(first, len(batch))
                if not isinstance(exc, Exception):
                    raise

    def _stub(self, index: int) -> Any:
        with self._stub_lock:
            return self._stub_locked(index)

    def _stub_locked(self, index: int) -> Any:
        entry = self._stubs.get(index)
        if entry is None:
            target = self._targets.all[index]
            if self._creds is None:
                channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
            else:
                channel = grpc.secure_channel(target, self._creds, options=CHANNEL_OPTIONS)
            entry = self._stubs[index] = (channel, ingest_pb2_grpc.IngestStub(channel))
        return entry[1]

    def _deliver(self, first: int, batch: list[Event]) -> None:
        """Publish one batch (with retries and failover) and record its outcome; always settles the batch."""
        try:
            response = self._publish(batch)
        except Exception as exc:
            self._ledger.record_failure(batch, exc)
        else:
            self._ledger.record_response(batch, response)
        finally:
            self._finished(first, len(batch))

    def _publish(self, batch: list[Event]) -> PublishResponse:
        request = PublishRequest(events=batch, omit_accepted_statuses=True)
        cursor = self._targets.cursor()  # this batch's own failover position
        response: PublishResponse | None = None
        for attempt in retrying(self.options.retry, before_sleep=cursor.advance):
            with attempt:
                stub = self._stub(cursor.index)
                response = stub.Publish(request, timeout=self.options.rpc_timeout_s, metadata=self._metadata)
        assert response is not None
        return response

    def _finished(self, first: int, count: int) -> None:
        self._slots.release()
        with self._cv:
            self._batcher.finished(first, count)
            self._cv.notify_all()


def _flush_at_exit() -> None:
    for client in list(_unclosed):
        try:
            client._flush_at_exit()
        except Exception:
            log.exception("IngestClient: flush at interpreter exit failed")


atexit.register(_flush_at_exit)
