"""G4: ``PublishStream`` holds at most 2 x ``stream_window`` (64) requests from their read until gRPC took their
response, so a client that keeps sending but never reads its responses stops the server reading (before the fix,
answered but unsent responses piled up in an unbounded queue)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.contract import Event, PublishRequest
from tests.unit.frontend_support import running_frontend

pytestmark = pytest.mark.unit


class _Ctx:
    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"abort {code} {details}")

    def abort_with_status(self, status: Any) -> None:
        raise RuntimeError(f"abort {status}")


def test_stream_stops_reading_when_its_responses_are_not_consumed(tmp_path: Path) -> None:
    """A client opens a stream and sends cheap requests (2,000 events of an unknown category each, ~20 KB on the
    wire, answered with 2,000 statuses: ~6x amplification) but reads only the first response. The server must stop
    pulling requests once 2 x ``stream_window`` responses wait to be sent (docs/ingest.md)."""
    with running_frontend(tmp_path) as (fe, _stub, _pub):
        pulled = 0
        bad = Event(event_id="", category="no_such_category", payload=b"{}")

        def requests() -> Iterator[PublishRequest]:
            nonlocal pulled
            for i in range(400):
                pulled += 1
                yield PublishRequest(events=[bad] * 2000, sequence=i)

        gen = fe.servicer.PublishStream(requests(), _Ctx())
        first = next(gen)  # the client read one response, then stops reading
        assert first.rejected == 2000
        time.sleep(3.0)
        window = 32
        assert pulled <= 2 * window + 2, (
            f"the server pulled {pulled} requests while the client read 1 response: {pulled - 1} responses "
            f"(~{(pulled - 1) * first.ByteSize() // 1_000_000} MB) queued for one stream"
        )
        gen.close()
        threading.Event().wait(0.1)
