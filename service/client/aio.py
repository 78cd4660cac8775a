"""``AsyncIngestClient``: the asyncio mirror of ``IngestClient`` over ``grpc.aio``.

Same contract as ``service.client.sync`` with coroutines: ``await send(...)`` waits while the buffer is full (or
raises ``BufferFull``), a background task batches, ``await flush()`` returns the outcomes, ``async with`` closes.
Create and use it inside one running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

from service.client._core import (
    CHANNEL_OPTIONS,
    Callback,
    ClientOptions,
    Ledger,
    Outstanding,
    Targets,
    credentials,
    metadata,
    parse_targets,
)
from service.client.errors import BufferFull, ClientClosed
from service.client.events import make_event
from service.client.results import FlushResult
from service.client.retry import async_retrying
from service.contract import Event, PublishRequest, ingest_pb2_grpc


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
        self._ledger = Ledger(on_rejected)
        self._buffer: deque[Event] = deque()
        self._buffer_bytes = 0
        self._oldest = 0.0
        self._outstanding = 0
        self._progress = Outstanding()
        self._flush_upto = 0
        self._closed = False
        self._cv: asyncio.Condition | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
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
        """Buffer one event; returns its id. Raises ``BufferFull``, ``ClientClosed``, ``InvalidEvent``."""
        event = make_event(category, payload, event_time=event_time, attributes=attributes, event_id=event_id,
                           producer=producer)  # fmt: skip
        await self.send_event(event)
        return event.event_id

    async def send_event(self, event: Event) -> None:
        opts = self.options
        cv = self._start()
        async with cv:
            if self._closed:
                raise ClientClosed("client is closed")
            if self._outstanding >= opts.max_buffer_events:
                if not opts.block_when_full:
                    raise BufferFull(f"{self._outstanding} events buffered or in flight (max_buffer_events)")
                try:
                    await asyncio.wait_for(
                        cv.wait_for(lambda: self._outstanding < opts.max_buffer_events), opts.block_timeout_s
                    )
                except TimeoutError:
                    raise BufferFull(f"buffer still full after {opts.block_timeout_s}s") from None
            if not self._buffer:
                self._oldest = time.monotonic()
            self._buffer.append(event)
            self._buffer_bytes += len(event.payload) + 64
            self._outstanding += 1
            self._progress.enqueued += 1
            if len(self._buffer) >= opts.max_batch_events or self._buffer_bytes >= opts.max_batch_bytes:
                cv.notify_all()

    async def flush(self, timeout: float | None = None) -> FlushResult:
        """Send everything buffered and wait for every earlier event's outcome. Raises ``TimeoutError``."""
        cv = self._start()
        async with cv:
            upto = self._progress.enqueued
            self._flush_upto = max(self._flush_upto, upto)
            cv.notify_all()
            await asyncio.wait_for(cv.wait_for(lambda: self._progress.oldest(len(self._buffer)) >= upto), timeout)
        return self._ledger.take()

    async def close(self) -> FlushResult:
        """Flush, stop the batcher and close channels. Idempotent."""
        result = await self.flush()
        cv = self._start()
        async with cv:
            self._closed = True
            cv.notify_all()
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
        opts = self.options
        while True:
            if self._buffer:
                due = (
                    len(self._buffer) >= opts.max_batch_events
                    or self._buffer_bytes >= opts.max_batch_bytes
                    or self._flush_upto > self._progress.enqueued - len(self._buffer)
                    or self._closed
                    or time.monotonic() - self._oldest >= opts.max_latency_s
                )
                if due:
                    first = self._progress.enqueued - len(self._buffer)
                    self._progress.started(first)
                    batch: list[Event] = []
                    size = 0
                    while self._buffer and len(batch) < opts.max_batch_events and size < opts.max_batch_bytes:
                        e = self._buffer.popleft()
                        batch.append(e)
                        size += len(e.payload) + 64
                    self._buffer_bytes -= size
                    self._oldest = time.monotonic()
                    return first, batch
                wait = max(0.0, self._oldest + opts.max_latency_s - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(cv.wait(), wait)
            elif self._closed:
                return None
            else:
                await cv.wait()

    async def _batch_loop(self) -> None:
        assert self._cv is not None and self._slots is not None
        while True:
            await self._slots.acquire()
            async with self._cv:
                taken = await self._take_batch(self._cv)
            if taken is None:
                self._slots.release()
                return
            task = asyncio.get_running_loop().create_task(self._deliver(*taken))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

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
        assert self._cv is not None and self._slots is not None
        request = PublishRequest(events=batch, omit_accepted_statuses=True)
        try:
            async for attempt in async_retrying(self.options.retry, before_sleep=self._targets.advance):
                with attempt:
                    stub = self._stub(self._targets.current)
                    response = await stub.Publish(request, timeout=self.options.rpc_timeout_s, metadata=self._metadata)
            self._ledger.record_response(batch, response)
        except Exception as exc:
            self._ledger.record_failure(batch, exc)
        finally:
            self._slots.release()
            async with self._cv:
                self._outstanding -= len(batch)
                self._progress.finished(first)
                self._cv.notify_all()
