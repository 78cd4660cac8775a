"""G4: ``max_inflight_bytes`` charges each accepted event its serialized size (+ ``EVENT_OVERHEAD``), the bytes the
front-end actually holds for it (attributes, producer, unknown fields), not just its payload."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from service.contract import Event
from service.frontend.publisher import FakePublisher
from tests.unit.frontend_support import event, request, running_frontend

pytestmark = pytest.mark.unit

LIMIT = 1024 * 1024


def _attr_heavy_event() -> Event:
    # Valid under the defaults: 4 attributes of 2,000-byte values (8,028 bytes <= max_attributes_bytes 8,192).
    e = event(payload=b"{}")
    for k in "abcd":
        e.attributes[k * 4] = "v" * 2000
    return e


def test_inflight_bound_counts_the_bytes_held_not_just_payloads(tmp_path: Path) -> None:
    """Pub/Sub stalls; 8 clients each send one valid request of 100 events with 8 KB of attributes and a 2-byte
    payload (~800 KB each) while ``max_inflight_bytes`` is 1 MiB. At most two requests may be admitted (the first,
    then the bound refuses with RESOURCE_EXHAUSTED). When only payloads were charged (100 x (2 + 96) bytes a request)
    all 8 were admitted: ~80x the bound held in memory."""
    pub = FakePublisher(mode="stall")
    with running_frontend(tmp_path, publisher=pub, max_inflight_bytes=LIMIT, publish_timeout_s=60) as (fe, stub, _):
        reqs = [request(*[_attr_heavy_event() for _ in range(100)]) for _ in range(8)]
        sizes = [r.ByteSize() for r in reqs]
        assert sizes[0] > 0.7 * LIMIT  # each request alone is most of the bound
        codes: list[grpc.StatusCode] = []
        lock = threading.Lock()

        def call(r: object) -> None:
            try:
                stub.Publish(r, timeout=3)
                code = grpc.StatusCode.OK
            except grpc.RpcError as err:
                code = err.code()
            with lock:
                codes.append(code)

        threads = [threading.Thread(target=call, args=(r,)) for r in reqs]
        for t in threads:
            t.start()
            time.sleep(0.1)  # admitted one after the other
        for t in threads:
            t.join()
        admitted = [c for c in codes if c is not grpc.StatusCode.RESOURCE_EXHAUSTED]
        charged = fe.servicer._flow.used
        pub.release("ok")
        held = sum(sizes[: len(admitted)])
        assert len(admitted) <= 2, (
            f"{len(admitted)} of 8 requests admitted: ~{held} bytes of events held while the in-flight bound is "
            f"{LIMIT} (charged only {charged})"
        )
