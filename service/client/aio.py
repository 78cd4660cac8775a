"""``AsyncIngestClient``: the asyncio mirror of ``IngestClient`` over ``grpc.aio``.

Same contract as ``service.client.sync`` with coroutines: ``await send(...)`` waits while the buffer is full (or
raises ``BufferFull``), a background task batches, ``await flush()`` returns the outcomes, ``async with`` closes.
Create and use it inside one running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import grpc.aio

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
        self._batcher = Batcher(self.options)
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
        """Buffer a ready-made ``Event``. An empty ``event_id`` or unset ``event_time`` is filled here, in place and
        once (``fill_defaults``), so every retry resends the same values. Raises ``BufferFull``, ``ClientClosed``."""
        fill_defaults(event)
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
                    await asyncio.wait_for(cv.wait_for(lambda: not b.full), opts.block_timeout_s)
                except TimeoutError:
                    raise BufferFull(f"buffer still full after {opts.block_timeout_s}s") from None
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
                self._batcher.finished(first, len(batch))
                self._cv.notify_all()
