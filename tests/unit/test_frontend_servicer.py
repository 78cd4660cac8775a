"""The front-end over real gRPC on 127.0.0.1 with a fake publisher: acks, per-event statuses, request-level errors."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from service.contract import PublishRequest, StatusCode
from service.envelope import decode
from service.frontend.auth import Authenticator, Identity
from service.frontend.publisher import FakePublisher
from service.frontend.server import Frontend
from tests.unit.frontend_support import event, published_event_ids, request, running_frontend
from tests.unit.frontend_support import until as _until

pytestmark = pytest.mark.unit


def _inflight(fe: Frontend) -> float:
    value: float = fe.metrics.inflight_bytes._value.get()
    return value


def test_mixed_batch_acks_good_events_once_published(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (_fe, stub, pub):
        good, bad, bytes_ev = event(), event(payload=b"{oops"), event(category="trace_span", payload=b"\x01")
        resp = stub.Publish(request(good, bad, bytes_ev, sequence=9), timeout=10)
        assert resp.sequence == 9 and (resp.accepted, resp.rejected) == (2, 1)
        assert [s.code for s in resp.statuses] == [StatusCode.ACCEPTED, StatusCode.INVALID_JSON, StatusCode.ACCEPTED]
        assert [s.index for s in resp.statuses] == [0, 1, 2]
        # Acked means published: the fake publisher confirmed both envelopes before the response.
        assert sorted(published_event_ids(pub)) == sorted([good.event_id, bytes_ev.event_id])
        topics = {t for t, _ in pub.published}
        assert topics == {"logpipe-bulk"}


def test_envelope_attributes_and_event_fields(tmp_path: Path) -> None:
    with running_frontend(tmp_path, instance_id="fe-test") as (_fe, stub, pub):
        e1, e2 = event(category="ads_click"), event(category="ads_click")
        stub.Publish(request(e1, e2), timeout=10)
        [(topic, enc)] = pub.published
        env = decode(enc.data, enc.attributes)
        assert topic == "logpipe-core" and enc.attributes["category"] == "ads_click"
        assert enc.attributes["event_count"] == "2" and env.frontend == "fe-test"
        assert [e.event_id for e in env.events] == [e1.event_id, e2.event_id]
        assert all(e.client_id == "anonymous" and e.ingest_time.seconds > 0 for e in env.events)


def test_envelopes_never_span_hours(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (_fe, stub, pub):
        hour = int(time.time()) // 3600 * 3600
        a, b = event(), event()
        a.event_time.FromSeconds(hour - 1)
        b.event_time.FromSeconds(hour + 1)
        assert stub.Publish(request(a, b), timeout=10).accepted == 2
        envs = [decode(enc.data, enc.attributes) for _, enc in pub.published]
        assert sorted(len(env.events) for env in envs) == [1, 1]
        assert len({enc.envelope_id for _, enc in pub.published}) == 2


def test_size_bound_seals_envelopes(tmp_path: Path) -> None:
    with running_frontend(tmp_path, envelope_target_bytes=4096, envelope_max_latency_ms=10_000) as (_f, stub, pub):
        events = [event(payload=b'{"x":"' + b"y" * 1000 + b'"}') for _ in range(12)]
        resp = stub.Publish(request(*events), timeout=10)  # would wait 10 s if only latency sealed envelopes
        assert resp.accepted == 12
        assert len(pub.published) >= 3
        assert all(int(enc.attributes["uncompressed_bytes"]) < 4096 + 2000 for _, enc in pub.published)


def test_empty_request_is_answered(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (_fe, stub, _pub):
        resp = stub.Publish(PublishRequest(), timeout=5)
        assert (resp.accepted, resp.rejected, len(resp.statuses)) == (0, 0, 0)


def test_too_many_events_is_invalid_argument(tmp_path: Path) -> None:
    with running_frontend(tmp_path, max_events_per_request=3) as (_fe, stub, _pub):
        with pytest.raises(grpc.RpcError) as err:
            stub.Publish(request(*[event() for _ in range(4)]), timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversized_message_is_refused_and_server_survives(tmp_path: Path) -> None:
    with running_frontend(tmp_path, max_receive_message_bytes=64 * 1024) as (_fe, stub, _pub):
        big = event(category="trace_span", payload=b"x" * 100_000)
        with pytest.raises(grpc.RpcError) as err:
            stub.Publish(request(big), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.Publish(request(event()), timeout=5).accepted == 1


def test_garbage_bytes_are_an_error_not_a_crash(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (fe, stub, _pub):
        channel = grpc.insecure_channel(f"127.0.0.1:{fe.port}")
        raw = channel.unary_unary("/logpipe.v1.Ingest/Publish")
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xff\xff\xff\x0f garbage", timeout=5)
        assert err.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
        channel.close()
        assert stub.Publish(request(event()), timeout=5).accepted == 1


def _auth() -> Authenticator:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    return Authenticator({digest: Identity("checkout", frozenset({"ads_click"}))})


def test_auth_unauthenticated_and_permission_denied(tmp_path: Path) -> None:
    with running_frontend(tmp_path, auth=_auth()) as (_fe, stub, pub):
        for md in ((), (("authorization", "Bearer wrong"),), (("authorization", "Basic s3cret"),)):
            with pytest.raises(grpc.RpcError) as err:
                stub.Publish(request(event(category="ads_click")), metadata=md, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "s3cret" not in (err.value.details() or "")
        ok = (("authorization", "Bearer s3cret"),)
        with pytest.raises(grpc.RpcError) as err:
            stub.Publish(request(event(category="ads_click"), event(category="app_log")), metadata=ok, timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "app_log" in err.value.details()
        assert pub.published == []  # nothing of a refused request is kept
        resp = stub.Publish(request(event(category="ads_click"), event(category="nope_cat")), metadata=ok, timeout=5)
        assert [s.code for s in resp.statuses] == [StatusCode.ACCEPTED, StatusCode.UNKNOWN_CATEGORY]
        [(_t, enc)] = pub.published
        assert {e.client_id for e in decode(enc.data, enc.attributes).events} == {"checkout"}


def test_backpressure_gives_resource_exhausted_with_retry_info(tmp_path: Path) -> None:
    pub = FakePublisher(mode="stall")
    with running_frontend(tmp_path, publisher=pub, max_inflight_bytes=4096, retry_after_ms=700,
                          publish_timeout_s=30) as (_fe, stub, _p):  # fmt: skip
        first = stub.Publish.future(request(*[event(payload=b'{"p":"' + b"x" * 3000 + b'"}')]), timeout=30)
        deadline = time.time() + 5
        while pub.attempts == 0 and time.time() < deadline:
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as err:
            stub.Publish(request(event(payload=b'{"p":"' + b"x" * 3000 + b'"}')), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(err.value)
        infos = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        assert len(infos) == 1
        info = error_details_pb2.RetryInfo()
        infos[0].Unpack(info)
        assert info.retry_delay.ToMilliseconds() == 700
        pub.release("ok")
        assert first.result(timeout=10).accepted == 1


def test_stream_answers_every_sequence(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (_fe, stub, pub):
        reqs = [request(event(), event(payload=b"bad"), sequence=i) for i in range(20)]
        responses = list(stub.PublishStream(iter(reqs), timeout=20))
        assert sorted(r.sequence for r in responses) == list(range(20))
        assert all((r.accepted, r.rejected) == (1, 1) for r in responses)
        assert len(published_event_ids(pub)) == 20


def test_stream_auth_failure_ends_stream(tmp_path: Path) -> None:
    with running_frontend(tmp_path, auth=_auth()) as (_fe, stub, _pub):
        with pytest.raises(grpc.RpcError) as err:
            list(stub.PublishStream(iter([request(event())]), timeout=5))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_serving_then_not_serving_after_shutdown(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (fe, _stub, _pub):
        channel = grpc.insecure_channel(f"127.0.0.1:{fe.port}")
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "logpipe.v1.Ingest"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        channel.close()


def test_shutdown_drains_pending_envelopes(tmp_path: Path) -> None:
    with running_frontend(tmp_path, envelope_max_latency_ms=60_000) as (fe, stub, pub):
        fut = stub.Publish.future(request(event()), timeout=30)
        time.sleep(0.3)
        assert pub.published == []  # held by the 60 s latency bound
        t = threading.Thread(target=fe.shutdown, kwargs={"grace_s": 5.0})
        t.start()
        assert fut.result(timeout=10).accepted == 1
        t.join(10)
        assert len(pub.published) == 1


def test_compact_response_lists_only_rejections(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (_fe, stub, pub):
        req = request(event(), event(payload=b"{oops"), event())
        req.omit_accepted_statuses = True
        resp = stub.Publish(req, timeout=10)
        assert (resp.accepted, resp.rejected) == (2, 1)
        assert [(s.index, s.code) for s in resp.statuses] == [(1, StatusCode.INVALID_JSON)]
        assert len(published_event_ids(pub)) == 2


def test_idle_streams_cannot_wedge_the_server(tmp_path: Path) -> None:
    with running_frontend(tmp_path, max_concurrent_rpcs=6) as (fe, stub, _pub):
        stop = threading.Event()

        def idle() -> Iterator[PublishRequest]:
            stop.wait(30)
            return
            yield  # a generator that sends nothing until told to stop

        calls = [stub.PublishStream(idle(), timeout=30) for _ in range(5)]
        time.sleep(0.5)
        assert stub.Publish(request(event()), timeout=5).accepted == 1  # a thread is still free
        extra = [stub.PublishStream(idle(), timeout=30) for _ in range(3)]
        time.sleep(0.5)
        with pytest.raises(grpc.RpcError) as err:
            stub.Publish(request(event()), timeout=5)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # refused, not queued forever
        stop.set()
        for c in calls + extra:
            c.cancel()
        assert fe.port


def test_full_spool_during_outage_is_resource_exhausted(tmp_path: Path) -> None:
    pub = FakePublisher(mode="fail")
    with running_frontend(tmp_path, publisher=pub, spool_max_bytes=2000) as (fe, stub, _p):
        small = stub.Publish(request(event()), timeout=10)  # fits the spool: acked from it
        assert small.accepted == 1 and fe.spool.depth == 1
        big = [event(category="trace_span", payload=os.urandom(3000))]  # incompressible
        with pytest.raises(grpc.RpcError) as err:
            stub.Publish(request(*big), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(err.value)
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status.details)


def test_reflection_lists_the_services(tmp_path: Path) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with running_frontend(tmp_path) as (fe, _stub, _pub):
        channel = grpc.insecure_channel(f"127.0.0.1:{fe.port}")
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        req = reflection_pb2.ServerReflectionRequest(list_services="")
        [resp] = list(stub.ServerReflectionInfo(iter([req]), timeout=5))
        names = {s.name for s in resp.list_services_response.service}
        assert {"logpipe.v1.Ingest", "grpc.health.v1.Health"} <= names
        channel.close()


def test_stream_keeps_at_most_32_requests_unanswered(tmp_path: Path) -> None:
    pub = FakePublisher(mode="stall")
    with running_frontend(tmp_path, publisher=pub, publish_timeout_s=60) as (fe, stub, _p):
        reqs = [request(event(), sequence=i) for i in range(100)]
        per_request = reqs[0].events[0].ByteSize() + 96  # servicer: the serialized event + EVENT_OVERHEAD
        call = stub.PublishStream(iter(reqs), timeout=30)
        assert _until(lambda: _inflight(fe) >= 32 * per_request)
        time.sleep(0.5)  # the server stopped reading: still exactly the window admitted
        assert _inflight(fe) == 32 * per_request
        pub.release("ok")
        assert sorted(r.sequence for r in call) == list(range(100))
        assert _until(lambda: _inflight(fe) == 0)


def test_cancelled_calls_give_back_their_inflight_bytes(tmp_path: Path) -> None:
    pub = FakePublisher(mode="stall")
    with running_frontend(tmp_path, publisher=pub, publish_timeout_s=60) as (fe, stub, _p):
        unary = stub.Publish.future(request(event()), timeout=30)
        stream = stub.PublishStream(iter([request(event(), sequence=i) for i in range(3)]), timeout=30)
        assert _until(lambda: _inflight(fe) > 0 and pub.attempts > 0)
        time.sleep(0.2)
        unary.cancel()
        stream.cancel()
        time.sleep(0.2)
        pub.release("ok")  # the envelopes become durable after their callers went away
        assert _until(lambda: _inflight(fe) == 0)
        assert stub.Publish(request(event()), timeout=5).accepted == 1


def test_garbage_in_a_stream_ends_it_with_an_error(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (fe, stub, _pub):
        channel = grpc.insecure_channel(f"127.0.0.1:{fe.port}")
        raw = channel.stream_stream("/logpipe.v1.Ingest/PublishStream")
        good = request(event(), sequence=1).SerializeToString()
        with pytest.raises(grpc.RpcError) as err:
            list(raw(iter([good, b"\xff\xff\xff\xff\x0f garbage"]), timeout=5))
        assert err.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)
        channel.close()
        assert stub.Publish(request(event()), timeout=5).accepted == 1


def test_timed_out_unary_keeps_its_bytes_until_its_envelopes_settle(tmp_path: Path) -> None:
    # Pub/Sub is down and the disk is slower than intake: the request's envelope waits in the spool writer's queue.
    pub = FakePublisher(mode="fail")
    big = b'{"p":"' + b"x" * 3000 + b'"}'
    with running_frontend(tmp_path, publisher=pub, max_inflight_bytes=4096) as (fe, stub, _p):
        disk = threading.Event()
        write = fe.spool.write
        fe.spool.write = lambda env: (disk.wait(30), write(env))[1]  # type: ignore[method-assign]
        fe.servicer._ack_timeout = 0.3
        try:
            _timed_out_then_settled(fe, stub, pub, disk, big)
        finally:
            disk.set()


def _timed_out_then_settled(fe: Frontend, stub: Any, pub: FakePublisher, disk: threading.Event, big: bytes) -> None:
    first = event(payload=big)
    with pytest.raises(grpc.RpcError) as err:
        stub.Publish(request(first), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # not durable in time: the client may retry
    charged = first.ByteSize() + 96  # the serialized event + EVENT_OVERHEAD
    assert _inflight(fe) == charged  # ...but the events still sit in memory, so their bytes stay charged
    for _ in range(3):  # the SDK's retries of the same events are refused, not queued behind the disk
        with pytest.raises(grpc.RpcError) as err:
            stub.Publish(request(first), timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in rpc_status.from_call(err.value).details)
    assert _inflight(fe) == charged
    disk.set()  # the envelope is fsync'd: its ticket settles and gives the bytes back
    assert _until(lambda: _inflight(fe) == 0)
    assert fe.spool.depth == 1
    assert stub.Publish(request(event()), timeout=10).accepted == 1
    pub.release("ok")  # Pub/Sub is back: nothing that was admitted is lost
    assert _until(lambda: first.event_id in published_event_ids(pub) and fe.spool.depth == 0)
