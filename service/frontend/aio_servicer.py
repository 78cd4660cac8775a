"""``AioIngestServicer``: the Ingest methods for a ``grpc.aio`` server, over the same steps as ``IngestServicer``.

Why: with the threaded server, each handler thread runs its request's validation in Python, and the threads take
turns on the GIL (the process plateaued at ~1.15 cores; docs/ingest.md). Here one event-loop thread parses,
validates and frames every request, and the packer seals envelopes (join, zstd, publish) in a small thread pool
(``Packer(seal_threads=...)``), so compression and publishing overlap with the loop instead of competing with N
handler threads.

Contract: the same as ``service.frontend.servicer`` (one status per event, request-level gRPC errors with RetryInfo,
acks only once durable, ``PublishStream`` keeps at most ``stream_window`` requests unanswered and stops reading past
that). Every method runs on the event loop and never blocks it on I/O: validation and framing are CPU work of a few
milliseconds per 1000 events, and durability is awaited through the ticket's callback (``call_soon_threadsafe``).
In-flight bytes are released exactly once per admitted request, also when the client cancels or the ack times out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from service.contract import PublishResponse
from service.frontend.servicer import Admitted, Incoming, IngestServicer, RequestError, parse_incoming

_END = object()


class AioIngestServicer:
    """Async ``Publish``/``PublishStream`` delegating authentication, admission and answers to ``core``."""

    def __init__(self, core: IngestServicer) -> None:
        self._core = core

    async def Publish(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> PublishResponse:
        core = self._core
        loop = asyncio.get_running_loop()
        durable: asyncio.Future[None] = loop.create_future()

        def settle(admitted: Admitted) -> None:  # on the loop, once the ticket completed
            if durable.cancelled():  # the handler is gone (client cancelled, or the ack timed out): release here
                core.release(admitted)
            else:
                durable.set_result(None)

        try:
            identity = core.authenticate(context)
            admitted = core.admit(_parse(raw), identity, on_done=lambda a: _soon(loop, settle, a))
            if admitted.ticket is not None:
                try:
                    await asyncio.wait_for(durable, core.ack_timeout_s)
                except TimeoutError:
                    msg = "events were not made durable in time; retry"
                    raise RequestError(grpc.StatusCode.UNAVAILABLE, msg) from None
            response = core.finish(admitted)
        except RequestError as exc:
            core.metrics.requests.labels("Publish", exc.code.name).inc()
            await exc.abort_async(context)
            raise  # unreachable: abort raises
        core.metrics.requests.labels("Publish", "OK").inc()
        return response

    async def PublishStream(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[PublishResponse]:
        core = self._core
        try:
            identity = core.authenticate(context)
        except RequestError as exc:
            await exc.abort_async(context)
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[object] = asyncio.Queue()
        window = asyncio.Semaphore(core.stream_window)
        counts = {"submitted": 0, "answered": 0}

        def complete(admitted: Admitted) -> None:  # on the loop; releases the bytes even if nobody reads ``out``
            try:
                out.put_nowait(core.finish(admitted))
            except RequestError as exc:
                out.put_nowait(exc)
            finally:
                window.release()

        def on_done(admitted: Admitted) -> None:  # any thread
            _soon(loop, complete, admitted)

        async def reader() -> None:
            try:
                async for raw in request_iterator:
                    await window.acquire()
                    counts["submitted"] += 1
                    try:
                        admitted = core.admit(_parse(raw), identity, on_done=on_done)
                    except RequestError as exc:
                        window.release()
                        out.put_nowait(exc)
                        return
                    if admitted.ticket is None:
                        complete(admitted)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the client went away or sent garbage: end the stream
                out.put_nowait(RequestError(grpc.StatusCode.CANCELLED, f"stream read failed: {exc.__class__.__name__}"))
            finally:
                out.put_nowait(_END)

        task = asyncio.create_task(reader())
        try:
            reading = True
            while reading or counts["answered"] < counts["submitted"]:
                item = await out.get()
                if item is _END:
                    reading = False
                elif isinstance(item, RequestError):
                    core.metrics.requests.labels("PublishStream", item.code.name).inc()
                    await item.abort_async(context)
                    return
                else:
                    counts["answered"] += 1
                    core.metrics.requests.labels("PublishStream", "OK").inc()
                    assert isinstance(item, PublishResponse)
                    yield item
        finally:
            task.cancel()


def _soon(loop: asyncio.AbstractEventLoop, fn: Callable[[Admitted], None], admitted: Admitted) -> None:
    """Run ``fn(admitted)`` on ``loop`` (called from whichever thread completed the ticket)."""
    loop.call_soon_threadsafe(fn, admitted)


def _parse(raw: bytes) -> Incoming:
    """Parse a request in the handler (the aio server would answer UNKNOWN and log a traceback for a failing
    deserializer). Raises ``RequestError`` (INVALID_ARGUMENT) on malformed bytes."""
    try:
        return parse_incoming(raw)
    except DecodeError:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, "request is not a valid PublishRequest") from None
