"""Helpers for front-end and client tests: an in-process ``Frontend`` on 127.0.0.1 with a fake publisher."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from service.catalog import load_catalog
from service.contract import Event, PublishRequest, ingest_pb2_grpc
from service.envelope import decode
from service.frontend.auth import Authenticator
from service.frontend.config import FrontendConfig
from service.frontend.publisher import FakePublisher
from service.frontend.server import Frontend

CATALOG = load_catalog()


def event(category: str = "app_log", payload: bytes = b'{"level":"info"}', **kw: Any) -> Event:
    e = Event(event_id=kw.pop("event_id", str(uuid.uuid4())), category=category, payload=payload, **kw)
    if "event_time" not in kw:
        e.event_time.FromNanoseconds(time.time_ns())
    return e


@contextmanager
def running_frontend(
    tmp_path: Path, publisher: FakePublisher | None = None, auth: Authenticator | None = None, **overrides: Any
) -> Iterator[tuple[Frontend, Any, FakePublisher]]:
    """A started front-end and an Ingest stub connected to it; shut down (by the context) afterwards."""
    publisher = publisher if publisher is not None else FakePublisher()
    settings: dict[str, Any] = {"port": 0, "spool_dir": tmp_path / "spool", "envelope_max_latency_ms": 5.0}
    settings.update(overrides)
    fe = Frontend(FrontendConfig(**settings), CATALOG, publisher, auth or Authenticator(None))
    port = fe.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield fe, ingest_pb2_grpc.IngestStub(channel), publisher
    finally:
        channel.close()
        fe.shutdown(grace_s=2.0)


def published_event_ids(publisher: FakePublisher) -> list[str]:
    out: list[str] = []
    for _topic, enc in list(publisher.published):
        out.extend(e.event_id for e in decode(enc.data, enc.attributes).events)
    return out


def request(*events: Event, sequence: int = 0) -> PublishRequest:
    return PublishRequest(events=list(events), sequence=sequence)


def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll ``cond`` every 20 ms; True once it holds, False after ``timeout_s``."""
    deadline = time.time() + timeout_s
    while not cond():
        if time.time() > deadline:
            return False
        time.sleep(0.02)
    return True
