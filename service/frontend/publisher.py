"""Where envelopes go: the ``Publisher`` interface, its Pub/Sub adapter and an in-memory fake.

Contract of ``Publisher.publish(topic, envelope)``: never blocks on the network; returns a
``concurrent.futures.Future`` that resolves to the Pub/Sub message id once the service confirmed the message, or fails
with the publish error. The caller bounds the wait (``DurableSink`` spools envelopes whose future is late). The same
envelope may be published more than once (retries, spool replays); consumers deduplicate on ``envelope_id``.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from service.envelope import EncodedEnvelope

if TYPE_CHECKING:
    from google.cloud import pubsub_v1


class Publisher(Protocol):
    """Publishes one envelope as one Pub/Sub message."""

    def publish(self, topic: str, envelope: EncodedEnvelope) -> Future[str]:
        """Start publishing; the future carries the message id or the error. Never blocks on I/O."""
        ...

    def close(self) -> None:
        """Release connections. Pending futures may fail afterwards."""
        ...


class PubsubPublisher:
    """``Publisher`` over google-cloud-pubsub's ``PublisherClient`` (one Pub/Sub message per envelope).

    Args:
        client: An injected ``PublisherClient``; build it with ``make_pubsub_client``.
        project: The project holding the topics.
        timeout_s: Total time the client may spend retrying one publish before failing its future.
    """

    def __init__(self, client: pubsub_v1.PublisherClient, project: str, timeout_s: float) -> None:
        from google.api_core import exceptions as gexc
        from google.api_core.retry import Retry, if_exception_type

        self._client = client
        self._project = project
        self._paths: dict[str, str] = {}
        retryable = if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError,
                                      gexc.Aborted, gexc.ResourceExhausted, gexc.Unknown)  # fmt: skip
        self._retry = Retry(predicate=retryable, initial=0.1, maximum=2.0, multiplier=2.0, timeout=timeout_s)
        self._timeout = timeout_s

    def publish(self, topic: str, envelope: EncodedEnvelope) -> Future[str]:
        path = self._paths.get(topic)
        if path is None:
            path = self._paths[topic] = self._client.topic_path(self._project, topic)
        fut: Future[str] = self._client.publish(
            path, envelope.data, retry=self._retry, timeout=self._timeout, **envelope.attributes
        )
        return fut

    def close(self) -> None:
        self._client.stop()


def make_pubsub_client(emulator_host: str | None) -> pubsub_v1.PublisherClient:
    """A ``PublisherClient`` tuned for few large messages; talks to ``emulator_host`` over plaintext when given."""
    import grpc
    from google.cloud import pubsub_v1

    batch = pubsub_v1.types.BatchSettings(max_bytes=9_000_000, max_latency=0.002, max_messages=100)
    flow = pubsub_v1.types.PublishFlowControl(message_limit=10_000, byte_limit=512 * 1024 * 1024)
    settings = pubsub_v1.types.PublisherOptions(flow_control=flow)
    if emulator_host:
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
        transport = PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_host, options=options))
        return pubsub_v1.PublisherClient(batch_settings=batch, publisher_options=settings, transport=transport)
    return pubsub_v1.PublisherClient(batch_settings=batch, publisher_options=settings)


@dataclass
class FakePublisher:
    """In-memory ``Publisher`` for tests. Modes: ``ok`` (confirm at once), ``fail`` (fail at once), ``stall``
    (never resolve until ``release``). Every confirmed envelope is in ``published`` as (topic, envelope)."""

    mode: str = "ok"
    published: list[tuple[str, EncodedEnvelope]] = field(default_factory=list)
    attempts: int = 0
    _stalled: list[tuple[str, EncodedEnvelope, Future[str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=itertools.count)

    def publish(self, topic: str, envelope: EncodedEnvelope) -> Future[str]:
        fut: Future[str] = Future()
        with self._lock:
            self.attempts += 1
            if self.mode == "stall":
                self._stalled.append((topic, envelope, fut))
                return fut
            if self.mode == "fail":
                fut.set_exception(ConnectionError("fake publisher is failing"))
                return fut
            self.published.append((topic, envelope))
            msg_id = str(next(self._ids))
        fut.set_result(msg_id)
        return fut

    def release(self, mode: str = "ok") -> None:
        """Switch mode and settle every stalled publish accordingly (``ok`` confirms them, else they fail)."""
        with self._lock:
            self.mode = mode
            stalled, self._stalled = self._stalled, []
        for topic, env, fut in stalled:
            if mode == "ok":
                with self._lock:
                    self.published.append((topic, env))
                fut.set_result("released")
            else:
                fut.set_exception(ConnectionError("fake publisher released as failed"))

    def envelope_ids(self) -> list[str]:
        with self._lock:
            return [e.envelope_id for _, e in self.published]

    def close(self) -> None:
        return None
