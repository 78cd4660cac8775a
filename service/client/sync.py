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
  * ``close`` (and leaving the ``with`` block) flushes, then closes the channels.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from service.client._core import (
    CHANNEL_OPTIONS,
    Batcher,
    Callback,
    ClientOptions,
    Ledger,
    Targets,
    credentials,
    metadata,
    parse_targets,
)
from service.client.errors import BufferFull, ClientClosed
from service.client.events import fill_defaults, make_event
from service.client.results import FlushResult
from service.client.retry import retrying
from service.contract import Event, PublishRequest, ingest_pb2_grpc


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
        self._ledger = Ledger(on_rejected)
        self._cv = threading.Condition()
        self._batcher = Batcher(self.options)
        self._closed = False
        self._stubs: dict[int, tuple[grpc.Channel, Any]] = {}
        self._stub_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
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
        """Buffer one event; returns its id. Raises ``BufferFull``, ``ClientClosed``, ``InvalidEvent``."""
        event = make_event(category, payload, event_time=event_time, attributes=attributes, event_id=event_id,
                           producer=producer)  # fmt: skip
        self.send_event(event)
        return event.event_id

    def send_event(self, event: Event) -> None:
        """Buffer a ready-made ``Event``. An empty ``event_id`` or unset ``event_time`` is filled here, in place and
        once (``fill_defaults``), so every retry resends the same values. Raises ``BufferFull``, ``ClientClosed``."""
        fill_defaults(event)
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
        """Flush, stop the background thread and close channels. Idempotent."""
        result = self.flush()
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
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
            self._pool = ThreadPoolExecutor(self.options.max_in_flight, thread_name_prefix="logpipe-send")
            self._thread = threading.Thread(target=self._batch_loop, name="logpipe-batcher", daemon=True)
            self._thread.start()

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
        assert self._pool is not None
        while True:
            self._slots.acquire()
            with self._cv:
                taken = self._take_batch()
            if taken is None:
                self._slots.release()
                return
            self._pool.submit(self._deliver, *taken)

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
        request = PublishRequest(events=batch, omit_accepted_statuses=True)
        try:
            for attempt in retrying(self.options.retry, before_sleep=self._targets.advance):
                with attempt:
                    stub = self._stub(self._targets.current)
                    response = stub.Publish(request, timeout=self.options.rpc_timeout_s, metadata=self._metadata)
            self._ledger.record_response(batch, response)
        except Exception as exc:
            self._ledger.record_failure(batch, exc)
        finally:
            self._slots.release()
            with self._cv:
                self._batcher.finished(first, len(batch))
                self._cv.notify_all()
