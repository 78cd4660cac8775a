"""``AioServer``: the Ingest, health and reflection services on a ``grpc.aio`` server, in its own event-loop thread.

Contract: ``start`` blocks until the port is bound and health says SERVING, and returns the port (raises ``OSError``
when it cannot bind). ``begin_stop(grace)`` sets health to NOT_SERVING and starts the server's graceful stop without
blocking (new RPCs are refused; admitted ones may finish within ``grace``), so the caller can drain the packer and the
sink meanwhile; ``finish_stop`` waits for it, then ends the loop and its thread. The loop must keep running while
envelopes drain: acks of admitted requests reach their handlers through it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.contract import PublishResponse, ingest_pb2
from service.frontend.aio_servicer import AioIngestServicer
from service.frontend.servicer import IngestServicer

SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name


class AioServer:
    """See the module contract. ``servicer`` holds the (synchronous) steps; this class only schedules them."""

    def __init__(self, servicer: IngestServicer, options: list[tuple[str, Any]], max_concurrent_rpcs: int) -> None:
        self._servicer = AioIngestServicer(servicer)
        self._options = options
        self._max_rpcs = max_concurrent_rpcs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ingest-loop", daemon=True)
        self._server: grpc.aio.Server | None = None
        self._health: Any = None  # grpc_health's asyncio HealthServicer (untyped)

    def start(self, address: str, credentials: grpc.ServerCredentials | None) -> int:
        self._thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(self._start(address, credentials), self._loop).result(60)
        except BaseException:
            self._end_loop()
            raise

    async def _start(self, address: str, credentials: grpc.ServerCredentials | None) -> int:
        server = grpc.aio.server(options=self._options, maximum_concurrent_rpcs=self._max_rpcs)
        server.add_generic_rpc_handlers((ingest_handlers(self._servicer),))
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot bind {address}")
        await server.start()
        self._server = server
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return port

    def begin_stop(self, grace_s: float) -> concurrent.futures.Future[None]:
        """Health NOT_SERVING, then the server's graceful stop, on the loop. Returns at once."""
        return asyncio.run_coroutine_threadsafe(self._stop(grace_s), self._loop)

    async def _stop(self, grace_s: float) -> None:
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace_s)

    def finish_stop(self, stopping: concurrent.futures.Future[None], timeout_s: float) -> None:
        """Wait for ``begin_stop``'s future (at most ``timeout_s``), then end the loop thread."""
        try:
            stopping.result(timeout_s)
        except concurrent.futures.TimeoutError:
            pass
        finally:
            self._end_loop()

    def _end_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()


def ingest_handlers(servicer: AioIngestServicer) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    """The async Ingest methods; they receive the request bytes and parse them themselves (``parse_incoming``)."""
    out = PublishResponse.SerializeToString
    handlers = {
        "Publish": grpc.unary_unary_rpc_method_handler(servicer.Publish, response_serializer=out),
        "PublishStream": grpc.stream_stream_rpc_method_handler(servicer.PublishStream, response_serializer=out),
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)
