"""IngestClient against in-process front-ends: acks, rejections, failures, failover after a timeout, bounded buffer."""

from __future__ import annotations

import datetime as dt
import socket
import time
from pathlib import Path

import pytest

from service.client import BufferFull, ClientOptions, IngestClient, Rejection, RetryPolicy
from service.client.results import Failure
from service.frontend.auth import Authenticator, Identity
from service.frontend.publisher import FakePublisher
from tests.unit.frontend_support import published_event_ids, running_frontend

pytestmark = pytest.mark.unit

FAST = ClientOptions(max_latency_s=0.01, rpc_timeout_s=2.0, retry=RetryPolicy(deadline_s=5.0, maximum_s=0.2))


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_send_flush_reports_accepted_and_rejected(tmp_path: Path) -> None:
    seen: list[Rejection | Failure] = []
    with running_frontend(tmp_path) as (fe, _stub, pub):
        with IngestClient(f"127.0.0.1:{fe.port}", options=FAST, on_rejected=seen.append) as client:
            ids = [client.send("app_log", {"n": i}) for i in range(50)]
            bad = client.send("app_log", "not json")
            raw = client.send("trace_span", b"\x00\x01", event_time=dt.datetime.now(dt.UTC), attributes={"k": "v"})
            result = client.flush()
        assert result.accepted == 51
        assert [(r.event_id, r.code) for r in result.rejected] == [(bad, "INVALID_JSON")]
        assert result.failed == [] and not result.ok
        assert seen == result.rejected
        assert sorted(published_event_ids(pub)) == sorted([*ids, raw])
        # Each outcome is reported by exactly one flush.
        assert client.flush().accepted == 0


def test_failover_to_next_target_when_first_is_down(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (fe, _stub, pub):
        targets = [f"127.0.0.1:{dead_port()}", f"127.0.0.1:{fe.port}"]
        with IngestClient(targets, options=FAST) as client:
            eid = client.send("app_log", {"a": 1})
            result = client.flush(timeout=20)
        assert result.accepted == 1 and published_event_ids(pub) == [eid]


def test_retry_after_timeout_goes_to_a_different_front_end(tmp_path: Path) -> None:
    stalled = FakePublisher(mode="stall")
    with (
        running_frontend(tmp_path / "a", publisher=stalled, publish_timeout_s=60) as (slow, _s1, _p1),
        running_frontend(tmp_path / "b") as (fast, _s2, pub),
    ):
        opts = ClientOptions(max_latency_s=0.01, rpc_timeout_s=0.5, retry=RetryPolicy(deadline_s=10, maximum_s=0.1))
        with IngestClient([f"127.0.0.1:{slow.port}", f"127.0.0.1:{fast.port}"], options=opts) as client:
            eid = client.send("app_log", {"a": 1})
            result = client.flush(timeout=20)
        assert result.accepted == 1
        assert published_event_ids(pub) == [eid]  # the same event id, through the other front-end
        stalled.release("ok")


def test_permanent_error_is_reported_as_failed_not_retried(tmp_path: Path) -> None:
    auth = Authenticator({"0" * 64: Identity("x", None)})
    with running_frontend(tmp_path, auth=auth) as (fe, _stub, pub):
        with IngestClient(f"127.0.0.1:{fe.port}", token="wrong", options=FAST) as client:
            eid = client.send("app_log", {"a": 1})
            t0 = time.monotonic()
            result = client.flush(timeout=20)
        assert time.monotonic() - t0 < 2
        assert [(f.event_id, f.grpc_code) for f in result.failed] == [(eid, "UNAUTHENTICATED")]
        assert result.accepted == 0 and pub.published == []


def test_retries_run_out_then_failed(tmp_path: Path) -> None:
    opts = ClientOptions(max_latency_s=0.01, rpc_timeout_s=0.2, retry=RetryPolicy(deadline_s=0.5, maximum_s=0.05))
    with IngestClient(f"127.0.0.1:{dead_port()}", options=opts) as client:
        eid = client.send("app_log", {"a": 1})
        result = client.flush(timeout=20)
    assert [f.event_id for f in result.failed] == [eid]
    assert result.failed[0].grpc_code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_full_buffer_raises_when_not_blocking(tmp_path: Path) -> None:
    stalled = FakePublisher(mode="stall")
    with running_frontend(tmp_path, publisher=stalled, publish_timeout_s=60) as (fe, _stub, _pub):
        opts = ClientOptions(max_buffer_events=3, block_when_full=False, max_latency_s=0.01, rpc_timeout_s=30)
        client = IngestClient(f"127.0.0.1:{fe.port}", options=opts)
        for i in range(3):
            client.send("app_log", {"i": i})
        with pytest.raises(BufferFull):
            client.send("app_log", {"i": 3})
        blocking = ClientOptions(max_buffer_events=1, block_timeout_s=0.2, max_latency_s=0.01, rpc_timeout_s=30)
        other = IngestClient(f"127.0.0.1:{fe.port}", options=blocking)
        other.send("app_log", {"i": 0})
        t0 = time.monotonic()
        with pytest.raises(BufferFull):
            other.send("app_log", {"i": 1})
        assert time.monotonic() - t0 >= 0.19
        stalled.release("ok")
        assert client.close().accepted == 3
        assert other.close().accepted == 1


def test_flush_mark_waits_for_older_batches_only() -> None:
    from service.client._core import Outstanding

    p = Outstanding()
    p.enqueued = 10  # events 0..9 sent
    p.started(0)  # batch with events 0..4 in flight, 5..9 buffered
    assert p.oldest(buffered=5) == 0
    p.started(5)  # the rest in flight too
    p.enqueued = 12  # a concurrent sender adds 10, 11 (buffered) after a flush marked 10
    p.finished(5)  # the younger batch settles first: the flush must still wait for batch 0
    assert p.oldest(buffered=2) == 0 < 10
    p.finished(0)
    assert p.oldest(buffered=2) == 10  # >= the mark: the flush returns, although 10 and 11 are pending
