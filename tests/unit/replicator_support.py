"""Fakes of the Pub/Sub pieces the replicator's message handler touches, shared by the replicator unit tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from replicator.errors import StoreError
from replicator.store import Created, MemoryStore

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

    def oldest_dropped(self) -> dt.datetime | None:
        return None


def offline_worker(
    settings: Any, store: Any = None, clock: Callable[[], dt.datetime] | None = None, tiers: tuple[str, ...] = ("core",)
) -> Any:
    """A ``replicator.worker.Worker`` of the shipped catalog with no Pub/Sub clients (nothing started): for tests of
    its watermark, ``closable`` and finalizer wiring. ``store`` defaults to a fresh ``MemoryStore``."""
    from replicator.crash import CrashPoints
    from replicator.metrics import Metrics
    from replicator.store import MemoryStore
    from replicator.worker import Worker
    from service.catalog import load_catalog

    extra = {"clock": clock} if clock is not None else {}
    return Worker(
        catalog=load_catalog(),
        tiers=tiers,
        project="p",
        store=store if store is not None else MemoryStore(),
        subscriber=None,
        publisher=None,
        metrics=Metrics(),
        settings=settings,
        crash=CrashPoints(),
        **extra,
    )


class NoManifestStore(MemoryStore):
    """A store whose manifest creates fail: a finalizer dies between its data files and its commit point (F3/F4)."""

    def create_if_absent(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
    ) -> Created:
        if "/_manifest-" in name:
            raise StoreError("create", name, "injected: killed before the commit", transient=True)
        return super().create_if_absent(name, data, metadata, content_type)
