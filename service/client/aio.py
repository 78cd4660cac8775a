"""``AsyncIngestClient``: the asyncio mirror of ``IngestClient`` over ``grpc.aio``.

Same contract as ``service.client.sync`` with coroutines: ``await send(...)`` waits while the buffer is full (or
raises ``BufferFull``), a background task batches, ``await flush()`` returns the outcomes, ``async with`` closes.
Create and use it inside one running event loop, and ``await close()`` before that loop ends: a loop that stops
first (``asyncio.run`` returning cancels the client's tasks) cannot deliver what is still buffered or in flight; the
client then records those events as failed (``CANCELLED``) and logs how many were not delivered (ERROR).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from service.client._batcher import Batcher
from service.client._ledger import Callback, Ledger
from service.client._options import ClientOptions
from service.client._targets import CHANNEL_OPTIONS, Targets, credentials, metadata, parse_targets
from service.client.errors import BufferFull, ClientClosed
from service.client.events import check_payload_size, fill_defaults, make_event
from service.client.results import FlushResult
from service.client.retry import async_retrying
from service.contract import Event, PublishRequest, PublishResponse, ingest_pb2_grpc

log = logging.getLogger("service.client")


class AsyncIngestClient:
    """Async client; arguments as ``IngestClient``."""

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
        self._batcher = Batcher(self.options)
        self._closed = False
        self._cv: asyncio.Condition | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._cancelled_events = 0  # in-flight events whose delivery the stopping loop cancelled
        self._stubs: dict[int, tuple[grpc.aio.Channel, Any]] = {}

    async def send(
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
        await self._enqueue(event)
        return event.event_id

    async def send_event(self, event: Event) -> None:
        """Buffer a ready-made ``Event``. An empty ``event_id`` or unset ``event_time`` is filled here, in place and
        once (``fill_defaults``), so every retry resends the same values. Raises ``BufferFull``, ``ClientClosed``,
        ``InvalidEvent`` (a payload over ``max_payload_bytes``)."""
        fill_defaults(event)
        check_payload_size(event, self.options.max_payload_bytes)
        await self._enqueue(event)

    async def _enqueue(self, event: Event) -> None:
        opts = self.options
        cv = self._start()
        async with cv:
            if self._closed:
                raise ClientClosed("client is closed")
            b = self._batcher
            if b.full:
                if not opts.block_when_full:
                    raise BufferFull(f"{b.outstanding} events buffered or in flight (max_buffer_events)")
                try:
                    await asyncio.wait_for(cv.wait_for(lambda: not b.full or self._closed), opts.block_timeout_s)
                except TimeoutError:
                    raise BufferFull(f"buffer still full after {opts.block_timeout_s}s") from None
                if self._closed:
                    raise ClientClosed("client was closed while send waited for buffer space")
            if b.add(event):
                cv.notify_all()

    async def flush(self, timeout: float | None = None) -> FlushResult:
        """Send everything buffered and wait for every earlier event's outcome. Raises ``TimeoutError``."""
        cv = self._start()
        async with cv:
            upto = self._batcher.mark_flush()
            cv.notify_all()
            await asyncio.wait_for(cv.wait_for(lambda: self._batcher.settled(upto)), timeout)
        return self._ledger.take()

    async def close(self) -> FlushResult:
        """Stop accepting events, flush, stop the batcher and close channels. Returns every outcome not yet returned
        by ``flush``. Idempotent."""
        cv = self._start()
        async with cv:
            self._closed = True  # first: no send gets in after the final flush, so it returns every outcome
            cv.notify_all()
        result = await self.flush()
        if self._task is not None:
            await self._task
        if self._inflight:
            await asyncio.gather(*self._inflight)
        for channel, _ in self._stubs.values():
            await channel.close(None)
        self._stubs.clear()
        return result

    async def __aenter__(self) -> AsyncIngestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- background ----------------------------------------------------------------------------------------------
    def _start(self) -> asyncio.Condition:
        if self._cv is None:
            self._cv = asyncio.Condition()
            self._slots = asyncio.Semaphore(self.options.max_in_flight)
            self._task = asyncio.get_running_loop().create_task(self._batch_loop())
        return self._cv

    async def _take_batch(self, cv: asyncio.Condition) -> tuple[int, list[Event]] | None:
        while True:
            if self._batcher.due(self._closed):
                return self._batcher.take()
            if self._batcher.empty:
                if self._closed:
                    return None
                await cv.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cv.wait(), self._batcher.wait_seconds())

    async def _batch_loop(self) -> None:
        assert self._cv is not None and self._slots is not None
        try:
            while True:
                await self._slots.acquire()
                async with self._cv:
                    taken = await self._take_batch(self._cv)
                if taken is None:
                    self._slots.release()
                    return
                try:
                    task = asyncio.get_running_loop().create_task(self._deliver(*taken))
                except Exception as exc:  # the batch fails with the reason; flush and close never wait for it
                    self._ledger.record_failure(taken[1], exc)
                    await self._finished(*taken)
                    continue
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
        except asyncio.CancelledError:
            self._closed = True
            left = self._batcher.outstanding + self._cancelled_events  # whichever task the loop cancelled first
            if left:
                log.error(
                    "AsyncIngestClient: its event loop stopped before close(): %d events buffered or in flight were "
                    "NOT delivered; await close() (or use async with) before the loop ends",
                    left,
                )
            raise

    def _stub(self, index: int) -> Any:
        entry = self._stubs.get(index)
        if entry is None:
            target = self._targets.all[index]
            if self._creds is None:
                channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.secure_channel(target, self._creds, options=CHANNEL_OPTIONS)
            entry = self._stubs[index] = (channel, ingest_pb2_grpc.IngestStub(channel))
        return entry[1]

    async def _deliver(self, first: int, batch: list[Event]) -> None:
        """Publish one batch (retries, failover) and record its outcome; always settles the batch."""
        try:
            response = await self._publish(batch)
        except asyncio.CancelledError:  # the loop is stopping: not delivered, and nobody may flush again
            self._cancelled_events += len(batch)
            self._ledger.record_failure(batch, asyncio.CancelledError("the event loop stopped before the ack"))
            self._settle_now(first, len(batch))
            raise
        except Exception as exc:
            self._ledger.record_failure(batch, exc)
        else:
            self._ledger.record_response(batch, response)
        await self._finished(first, batch)

    async def _publish(self, batch: list[Event]) -> PublishResponse:
        request = PublishRequest(events=batch, omit_accepted_statuses=True)
        cursor = self._targets.cursor()  # this batch's own failover position
        response: PublishResponse | None = None
        async for attempt in async_retrying(self.options.retry, before_sleep=cursor.advance):
            with attempt:
                stub = self._stub(cursor.index)
                response = await stub.Publish(request, timeout=self.options.rpc_timeout_s, metadata=self._metadata)
        assert response is not None
        return response

    async def _finished(self, first: int, batch: list[Event]) -> None:
        assert self._cv is not None
        async with self._cv:
            self._settle_now(first, len(batch))
            self._cv.notify_all()

    def _settle_now(self, first: int, count: int) -> None:
        """Settle without the condition (single-threaded loop; used where awaiting is impossible)."""
        assert self._slots is not None
        self._slots.release()
        self._batcher.finished(first, count)
