"""IngestClient against in-process front-ends: acks, rejections, failures, failover after a timeout, bounded buffer.

``fake_server`` (a bare gRPC server around a ``FakeIngest`` servicer) stands in where the real front-end cannot
misbehave on demand: hanging, a small receive limit, scripted rejections. The async and exit tests reuse it.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from service.client import BufferFull, ClientClosed, ClientOptions, IngestClient, InvalidEvent, Rejection, RetryPolicy
from service.client._batcher import Batcher
from service.client._ledger import Ledger
from service.client._targets import Targets
from service.client.results import Failure
from service.contract import Event, EventStatus, PublishRequest, PublishResponse, StatusCode, ingest_pb2_grpc
from service.frontend.auth import Authenticator, Identity
from service.frontend.publisher import FakePublisher
from tests.unit.frontend_support import published_event_ids, running_frontend

pytestmark = pytest.mark.unit

FAST = ClientOptions(max_latency_s=0.01, rpc_timeout_s=2.0, retry=RetryPolicy(deadline_s=5.0, maximum_s=0.2))


class FakeIngest(ingest_pb2_grpc.IngestServicer):
    """Accepts every event (recording its id) unless ``handler`` answers instead."""

    def __init__(self, handler: Callable[[PublishRequest, Any], PublishResponse] | None = None) -> None:
        self.handler = handler
        self.event_ids: list[str] = []
        self.calls = 0
        self.release = threading.Event()  # handlers that hang wait on this
        self._lock = threading.Lock()

    def Publish(self, request: PublishRequest, context: Any) -> PublishResponse:
        with self._lock:
            self.calls += 1
        if self.handler is not None:
            return self.handler(request, context)
        with self._lock:
            self.event_ids.extend(e.event_id for e in request.events)
        return PublishResponse(accepted=len(request.events))


@contextmanager
def fake_server(servicer: FakeIngest, max_receive_bytes: int | None = None) -> Iterator[int]:
    """A started gRPC server on 127.0.0.1 around ``servicer``; yields its port."""
    options = [("grpc.max_receive_message_length", max_receive_bytes)] if max_receive_bytes else []
    server = grpc.server(ThreadPoolExecutor(64), options=options)
    ingest_pb2_grpc.add_IngestServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        servicer.release.set()
        server.stop(0)


def hang(servicer: FakeIngest) -> Callable[[PublishRequest, Any], PublishResponse]:
    def handler(request: PublishRequest, context: Any) -> PublishResponse:
        servicer.release.wait(10)
        context.abort(grpc.StatusCode.UNAVAILABLE, "hung")
        raise AssertionError("unreachable")

    return handler


def reject_first(request: PublishRequest, context: Any) -> PublishResponse:
    status = EventStatus(index=0, code=StatusCode.INVALID_JSON, message="bad")
    return PublishResponse(accepted=len(request.events) - 1, rejected=1, statuses=[status])


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
    from service.client._batcher import Outstanding

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


# --- review fixes ------------------------------------------------------------------------------------------------


def test_delivery_does_not_depend_on_an_executor_that_refuses_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Late in interpreter shutdown no new thread starts: the batcher delivers inline. Any other error starting a
    delivery fails that batch with the reason, and flush returns instead of waiting forever."""
    real = threading.Thread
    error: list[BaseException] = [RuntimeError("can't create new thread at interpreter shutdown")]

    class NoSendThreads(real):  # type: ignore[misc,valid-type]
        def start(self) -> None:
            if self.name == "logpipe-send":
                raise error[0]
            super().start()

    monkeypatch.setattr(threading, "Thread", NoSendThreads)
    servicer = FakeIngest()
    with fake_server(servicer) as port, IngestClient(f"127.0.0.1:{port}", options=FAST) as client:
        ids = [client.send("app_log", {"i": i}) for i in range(5)]
        assert client.flush(timeout=5).accepted == 5
        assert sorted(servicer.event_ids) == sorted(ids)
        error[0] = MemoryError("no memory for a thread")
        eid = client.send("app_log", {"i": 5})
        result = client.flush(timeout=5)
        assert [(f.event_id, f.grpc_code, f.message) for f in result.failed] == [
            (eid, "MemoryError", "no memory for a thread")
        ]


def test_failover_keeps_a_cursor_per_batch() -> None:
    """Many batches failing at once on a hung front-end: each tries it at most once, then the next target."""
    hung = FakeIngest()
    hung.handler = hang(hung)
    good = FakeIngest()
    opts = ClientOptions(max_batch_events=10, max_latency_s=0.01, rpc_timeout_s=0.3,
                         retry=RetryPolicy(deadline_s=5, initial_s=0.001, maximum_s=0.01))  # fmt: skip
    with fake_server(hung) as hp, fake_server(good) as gp:
        client = IngestClient([f"127.0.0.1:{hp}", f"127.0.0.1:{gp}"], options=opts)
        for i in range(160):
            client.send("app_log", {"i": i})
        assert client.close().accepted == 160
        assert hung.calls <= 16  # one attempt per batch at most (16 batches)
    targets = Targets(["a", "b", "c"])
    one, two = targets.cursor(), targets.cursor()
    one.advance()
    assert (one.index, targets.preferred) == (1, 1)
    two.advance()  # the same target failed for another batch: the shared one does not move again
    assert (two.index, targets.preferred) == (1, 1)


def test_oversized_event_raises_and_batches_stay_under_max_bytes() -> None:
    servicer = FakeIngest()
    with fake_server(servicer) as port:
        with IngestClient(f"127.0.0.1:{port}", options=ClientOptions(max_payload_bytes=100)) as client:
            eid = client.send("app_log", b"x" * 100)
            with pytest.raises(InvalidEvent, match="payload is 101 bytes, more than max_payload_bytes=100"):
                client.send("app_log", b"x" * 101)
            with pytest.raises(InvalidEvent, match="max_payload_bytes"):
                client.send_event(Event(category="app_log", payload=b"x" * 101))
        assert servicer.event_ids == [eid]
    assert ClientOptions().max_payload_bytes == 1024 * 1024  # the front-end's max_payload_bytes default
    b = Batcher(ClientOptions(max_batch_bytes=1000))
    for _ in range(3):
        b.add(Event(event_id="e", category="app_log", payload=b"x" * 400))
    b.add(Event(event_id="e", category="app_log", payload=b"x" * 5000))
    sizes = [sum(e.ByteSize() + 6 for e in b.take()[1]) for _ in range(3)]
    assert sizes[0] <= 1000 and sizes[1] <= 1000 and b.empty  # the big event went alone


def test_request_over_the_receive_limit_fails_at_once_with_the_reason() -> None:
    servicer = FakeIngest()
    opts = ClientOptions(max_latency_s=0.01, retry=RetryPolicy(deadline_s=5, maximum_s=0.05))
    with (
        fake_server(servicer, max_receive_bytes=64 * 1024) as port,
        IngestClient(f"127.0.0.1:{port}", options=opts) as client,
    ):
        for _ in range(100):
            client.send("app_log", b"x" * 1024)
        t0 = time.monotonic()
        result = client.flush(timeout=10)
    assert time.monotonic() - t0 < 2  # not retried for the whole deadline
    assert len(result.failed) == 100 and result.failed[0].grpc_code == "RESOURCE_EXHAUSTED"
    assert "larger than max" in result.failed[0].message


def test_callback_exception_is_logged_and_changes_no_outcome(caplog: pytest.LogCaptureFixture) -> None:
    def callback(item: Rejection | Failure) -> None:
        raise ValueError("oops")

    with (
        fake_server(FakeIngest(reject_first)) as port,
        IngestClient(f"127.0.0.1:{port}", options=FAST, on_rejected=callback) as client,
    ):
        for i in range(5):
            client.send("app_log", {"i": i})
        result = client.flush(timeout=5)
    assert (result.accepted, len(result.rejected), result.failed) == (4, 1, [])
    assert "on_rejected raised" in caplog.text


def test_outcome_lists_are_bounded_and_count_the_rest() -> None:
    seen: list[Rejection | Failure] = []
    ledger = Ledger(seen.append, max_listed=3)
    events = [Event(event_id=f"e{i}", category="app_log") for i in range(5)]
    ledger.record_response(events[:2], PublishResponse(accepted=1, rejected=1, statuses=[EventStatus(index=0)]))
    ledger.record_failure(events, RuntimeError("down"))
    result = ledger.take()
    assert (len(result.rejected), result.rejected_not_listed) == (1, 0)
    assert (len(result.failed), result.failed_not_listed, result.failed_count) == (2, 3, 5)
    assert not result.ok and len(seen) == 6
    assert ledger.take() == type(result)()  # counts reset too


def test_blocked_sender_gets_client_closed_and_close_returns_every_outcome() -> None:
    servicer = FakeIngest()
    release = threading.Event()

    def slow(request: PublishRequest, context: Any) -> PublishResponse:
        release.wait(5)
        return PublishResponse(accepted=len(request.events))

    servicer.handler = slow
    opts = ClientOptions(max_buffer_events=1, max_latency_s=0.01, rpc_timeout_s=10)
    with fake_server(servicer) as port:
        client = IngestClient(f"127.0.0.1:{port}", options=opts)
        client.send("app_log", {"i": 0})
        outcome: list[object] = []
        sender = threading.Thread(target=lambda: outcome.append(_try_send(client)))
        sender.start()
        time.sleep(0.2)  # the sender is blocked on the full buffer
        closing = threading.Thread(target=lambda: outcome.append(client.close()))
        closing.start()
        sender.join(2)
        assert outcome and isinstance(outcome[0], ClientClosed)
        release.set()
        closing.join(5)
        assert outcome[1].accepted == 1  # type: ignore[attr-defined]


def _try_send(client: IngestClient) -> object:
    try:
        return client.send("app_log", {"i": 1})
    except ClientClosed as exc:
        return exc


def test_bad_event_time_and_attributes_raise_invalid_event() -> None:
    client = IngestClient("127.0.0.1:1")
    with pytest.raises(InvalidEvent, match="event_time"):
        client.send("app_log", {}, event_time="2026-01-01")
    with pytest.raises(InvalidEvent, match="event_time"):
        client.send("app_log", {}, event_time=float("nan"))
    with pytest.raises(InvalidEvent, match="attributes"):
        client.send("app_log", {}, attributes={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidEvent, match="category"):
        client.send(7, {})  # type: ignore[arg-type]
    client.close()
