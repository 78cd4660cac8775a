"""Second test for the front-end mutant that only one unit test caught (docs/guarantees.md, "Mutation audit").

"Ack after a durability timeout": a unary ``Publish`` whose events are not durable when its wait ends must be
refused (UNAVAILABLE, the client retries), never answered ACCEPTED. The first test reaches that wait through a slow
spool disk; this one through a Pub/Sub publish that is not confirmed yet (the publish watchdog has not spooled it).
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from service.frontend.publisher import FakePublisher
from tests.unit.frontend_support import event, published_event_ids, request, running_frontend

pytestmark = pytest.mark.unit


def test_an_unconfirmed_publish_is_never_acked_when_the_wait_for_durability_ends(tmp_path: Path) -> None:
    pub = FakePublisher(mode="stall")  # Pub/Sub neither confirms nor fails
    with running_frontend(tmp_path, publisher=pub, publish_timeout_s=60.0) as (fe, stub, _p):
        fe.servicer._ack_timeout = 0.3  # the request's wait ends long before the watchdog would spool the envelope
        first = event()
        try:
            resp = stub.Publish(request(first), timeout=10)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE  # not durable in time: the client retries
        else:
            pytest.fail(f"{resp.accepted} event(s) acked while neither confirmed by Pub/Sub nor in the spool")
        assert published_event_ids(pub) == [] and fe.spool.depth == 0  # so the refusal was the only right answer
        pub.release("ok")  # Pub/Sub confirms: nothing admitted is lost, and new requests are acked again
        deadline = time.time() + 10
        while first.event_id not in published_event_ids(pub) and time.time() < deadline:
            time.sleep(0.02)
        assert published_event_ids(pub) == [first.event_id]
        assert stub.Publish(request(event()), timeout=10).accepted == 1
