"""Fakes of the Pub/Sub pieces the replicator's message handler touches, shared by the replicator unit tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

#: The default publish time of a ``FakeMessage``.
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)


@dataclass
class FakeMessage:
    """A received Pub/Sub message: records ``ack``/``nack``/``ack_with_response`` calls in ``calls``."""

    data: bytes
    attributes: Mapping[str, str]
    message_id: str = "m1"
    publish_time: dt.datetime = H
    calls: list[str] = field(default_factory=list)
    ack_future: Future[None] = field(default_factory=Future)

    def ack(self) -> None:
        self.calls.append("ack")

    def nack(self) -> None:
        self.calls.append("nack")

    def ack_with_response(self) -> Any:
        self.calls.append("ack_with_response")
        return self.ack_future


class FakeDeadLetter:
    """A ``DeadLetterSink`` that keeps what it was given, or raises when ``fail``."""

    def __init__(self, fail: bool = False) -> None:
        self.published: list[tuple[bytes, dict[str, str]]] = []
        self.fail = fail

    def publish(self, data: bytes, attributes: Mapping[str, str]) -> None:
        if self.fail:
            raise TimeoutError("dead-letter topic unreachable")
        self.published.append((data, dict(attributes)))


class HeldHandler:
    """What the watermark reads from a message handler: the publish time of the oldest message held, if any."""

    def __init__(self, held: dt.datetime | None) -> None:
        self.held = held

    def oldest_held(self) -> dt.datetime | None:
        return self.held

    def oldest_recent(self) -> dt.datetime | None:
        return None
