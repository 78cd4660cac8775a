"""``Frontend``: one ``logpipe serve`` process, assembled from its parts, with startup and graceful shutdown.

Lifecycle:
  1. ``start()``: open (lock, clean, index) the spool, start the sink (which replays what a previous run left), the
     packer, the gRPC server (Ingest + health + reflection, bounded receive size and concurrency), metrics; write the
     port file (atomically) and set health to SERVING. Readiness = port file present and health SERVING.
  2. ``shutdown()`` (SIGTERM/SIGINT): health NOT_SERVING, refuse new requests, let admitted ones finish (grace),
     seal open batches, drain every envelope to Pub/Sub or the spool, stop.
What survives a crash (SIGKILL): spool files (replayed on the next start). Unacked events in memory are lost, which
the contract allows because they were not acked.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service.catalog import Catalog
from service.contract import PublishResponse, ingest_pb2
from service.frontend.auth import Authenticator
from service.frontend.config import FrontendConfig
from service.frontend.fastpath import WireScanner
from service.frontend.flow import InflightBytes
from service.frontend.incoming import parse_incoming
from service.frontend.metrics import Metrics
from service.frontend.packer import Packer
from service.frontend.publisher import Publisher
from service.frontend.servicer import IngestServicer
from service.frontend.sink import DurableSink
from service.frontend.spool import Spool
from service.frontend.validate import Limits, Validator

log = logging.getLogger(__name__)
SERVICE_NAME = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name


class Frontend:
    """One front-end. Build with injected catalog/publisher/auth; ``start`` does the I/O."""

    def __init__(
        self,
        config: FrontendConfig,
        catalog: Catalog,
        publisher: Publisher,
        auth: Authenticator,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.spool = Spool(config.resolved_spool_dir, config.spool_max_bytes)
        self._publisher = publisher
        self.sink = DurableSink(
            publisher, self.spool, catalog_topic(catalog), self.metrics,
            publish_timeout_s=config.publish_timeout_s, replay_interval_s=config.replay_interval_s,
        )  # fmt: skip
        self.packer = Packer(
            self.sink.submit, self.metrics, instance_id=config.resolved_instance_id,
            target_bytes=config.envelope_target_bytes, max_latency_s=config.envelope_max_latency_ms / 1000,
            zstd_level=config.zstd_level,
        )  # fmt: skip
        limits = Limits.from_config(config)
        self.servicer = IngestServicer(
            catalog, Validator(catalog, limits), self.packer,
            InflightBytes(config.max_inflight_bytes, self.metrics), auth, self.metrics,
            max_events_per_request=config.max_events_per_request, retry_after_s=config.retry_after_ms / 1000,
            ack_timeout_s=config.publish_timeout_s * 2 + 30, clock=clock,
            scanner=WireScanner(catalog, limits, config.max_events_per_request),
        )  # fmt: skip
        self.health = health.HealthServicer()
        self.port = 0
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()
        self._metrics_server: Any = None

    def start(self) -> int:
        """Start serving; returns the bound port. Raises ``ConfigError``/``SpoolLocked``/``OSError``."""
        cfg = self.config
        leftovers = self.spool.open()
        if leftovers:
            log.info("spool has envelopes from a previous run; replaying", extra={"files": len(leftovers)})
        self.sink.start()
        self.packer.start()
        options = [
            ("grpc.max_receive_message_length", cfg.max_receive_message_bytes),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.workers or cfg.max_concurrent_rpcs, thread_name_prefix="grpc"),
            options=options,
            maximum_concurrent_rpcs=cfg.max_concurrent_rpcs,
        )
        server.add_generic_rpc_handlers((ingest_handlers(self.servicer),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        address = f"{cfg.host}:{cfg.port}" if ":" not in cfg.host else f"[{cfg.host}]:{cfg.port}"
        if cfg.tls:
            assert cfg.tls_cert is not None and cfg.tls_key is not None
            creds = grpc.ssl_server_credentials([(cfg.tls_key.read_bytes(), cfg.tls_cert.read_bytes())])
            self.port = server.add_secure_port(address, creds)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot bind {address}")
        server.start()
        self._server = server
        if cfg.metrics_port:
            from prometheus_client import start_http_server

            self._metrics_server, _thread = start_http_server(cfg.metrics_port, addr=cfg.host,
                                                              registry=self.metrics.registry)  # fmt: skip
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if cfg.port_file is not None:
            write_atomic(cfg.port_file, f"{self.port}\n")
        log.info(
            "serving",
            extra={"address": f"{cfg.host}:{self.port}", "tls": cfg.tls, "auth": self.servicer_auth_enabled,
                   "spool": str(cfg.resolved_spool_dir), "instance": cfg.resolved_instance_id},
        )  # fmt: skip
        return self.port

    @property
    def servicer_auth_enabled(self) -> bool:
        return self.servicer._auth.enabled

    def shutdown(self, grace_s: float | None = None) -> None:
        """Stop intake, drain in-flight events to Pub/Sub or the spool, stop. Idempotent; blocks until done."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.drain_timeout_s if grace_s is None else grace_s
        log.info("draining")
        self.health.enter_graceful_shutdown()
        self.servicer.close_intake()
        stop_done = self._server.stop(grace) if self._server is not None else None
        self.packer.stop()
        self.sink.drain(grace)
        if stop_done is not None:
            stop_done.wait(grace + 1)
        self.sink.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self._publisher.close()
        self.spool.close()
        log.info("stopped", extra={"spooled_left": self.spool.depth})

    def wait(self) -> None:
        if self._server is not None:
            self._server.wait_for_termination()


def ingest_handlers(servicer: IngestServicer) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    """The Ingest methods with a deserializer that also keeps each event's original bytes (see ``Incoming``)."""
    out = PublishResponse.SerializeToString
    handlers = {
        "Publish": grpc.unary_unary_rpc_method_handler(
            servicer.Publish, request_deserializer=parse_incoming, response_serializer=out
        ),
        "PublishStream": grpc.stream_stream_rpc_method_handler(
            servicer.PublishStream, request_deserializer=parse_incoming, response_serializer=out
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def catalog_topic(catalog: Catalog) -> Callable[[str], str]:
    """category -> its tier's topic name; ``KeyError`` for a category not in the catalog (``DurableSink`` then
    quarantines a spooled envelope of it instead of retrying it forever)."""
    topics = {c.name: catalog.topic(c.tier) for c in catalog.categories}
    return topics.__getitem__


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
