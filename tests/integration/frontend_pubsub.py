"""Helpers for front-end tests on the Pub/Sub emulator: a private subscription per test and pulling envelopes back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from service.contract import Envelope
from service.envelope import decode
from service.local.clients import pubsub_subscriber
from service.local.endpoints import Endpoints


@dataclass
class Pulled:
    envelopes: list[Envelope] = field(default_factory=list)
    attributes: list[dict[str, str]] = field(default_factory=list)

    @property
    def event_ids(self) -> list[str]:
        return [e.event_id for env in self.envelopes for e in env.events]

    @property
    def envelope_ids(self) -> list[str]:
        return [env.envelope_id for env in self.envelopes]


class Tap:
    """A subscription on one topic, created before the test publishes (Pub/Sub only delivers what comes after)."""

    def __init__(self, endpoints: Endpoints, topic: str) -> None:
        self._sub = pubsub_subscriber(endpoints)
        self.path = self._sub.subscription_path(endpoints.project, f"{topic}-fe-test-{uuid.uuid4().hex[:8]}")
        self._sub.create_subscription(name=self.path, topic=f"projects/{endpoints.project}/topics/{topic}")
        self.pulled = Pulled()

    def pull(self, until: int = 0, timeout_s: float = 20.0) -> Pulled:
        """Pull and ack until at least ``until`` events were seen (or the timeout), then one more empty pull."""
        deadline = time.time() + timeout_s
        while True:
            resp = self._sub.pull(subscription=self.path, max_messages=50, timeout=5)
            msgs = resp.received_messages
            for m in msgs:
                self.pulled.envelopes.append(decode(m.message.data, dict(m.message.attributes)))
                self.pulled.attributes.append(dict(m.message.attributes))
            if msgs:
                self._sub.acknowledge(subscription=self.path, ack_ids=[m.ack_id for m in msgs])
            if (len(self.pulled.event_ids) >= until and not msgs) or time.time() > deadline:
                return self.pulled

    def close(self) -> None:
        self._sub.delete_subscription(subscription=self.path)
        self._sub.close()


@contextmanager
def tap(endpoints: Endpoints, topic: str) -> Iterator[Tap]:
    t = Tap(endpoints, topic)
    try:
        yield t
    finally:
        t.close()
