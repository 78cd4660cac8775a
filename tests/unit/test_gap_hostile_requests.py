"""G5 gap tests: hostile requests are answered (per event or per request) and never crash or wedge the front-end.

Each test sends one hostile request over real gRPC, then proves the same server still accepts a good event.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from service.contract import Event, StatusCode
from tests.unit.frontend_support import event, published_event_ids, request, running_frontend

pytestmark = pytest.mark.unit


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    tag, size = (number << 3) | 2, len(payload)
    out = bytearray()
    for v in (tag, size):
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out) + payload


def _still_serving(stub: object) -> None:
    good = event()
    assert stub.Publish(request(good), timeout=10).accepted == 1  # type: ignore[attr-defined]


def test_deeply_nested_json_is_rejected_per_event_and_neighbours_survive(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (_fe, stub, pub):
        deep = event(payload=b"[" * 5_000 + b"]" * 5_000)  # 10 kB, far under the payload limit
        good = event()
        resp = stub.Publish(request(deep, good), timeout=30)
        assert [s.code for s in resp.statuses] == [StatusCode.INVALID_JSON, StatusCode.ACCEPTED]
        assert resp.statuses[0].message
        assert published_event_ids(pub) == [good.event_id]


def test_deeply_nested_json_does_not_kill_the_server(tmp_path: Path) -> None:
    """Whatever the answer to a deeply nested payload, the process survives and serves the next request."""
    with running_frontend(tmp_path) as (_fe, stub, _pub):
        for payload in (b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 50_000):
            try:
                stub.Publish(request(event(payload=payload)), timeout=30)
            except grpc.RpcError as err:
                assert err.code() is not grpc.StatusCode.UNAVAILABLE
            _still_serving(stub)


def test_invalid_utf8_payload_gets_its_own_reason(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (_fe, stub, pub):
        bad, good = event(payload=b'{"msg":"\xff\xfe"}'), event()
        resp = stub.Publish(request(bad, good), timeout=10)
        assert [s.code for s in resp.statuses] == [StatusCode.INVALID_JSON, StatusCode.ACCEPTED]
        assert "UTF-8" in resp.statuses[0].message
        assert published_event_ids(pub) == [good.event_id]


def test_invalid_utf8_in_string_fields_is_answered_not_crashing(tmp_path: Path) -> None:
    """Proto3 ``string`` fields with invalid UTF-8 on the wire: a hand-built request the Python client cannot send."""
    with running_frontend(tmp_path) as (fe, stub, pub):
        channel = grpc.insecure_channel(f"127.0.0.1:{fe.port}")
        raw = channel.unary_unary("/logpipe.v1.Ingest/Publish")
        good = event()
        bad_id = _field(1, b"\xff\xfe-not-utf8") + _field(2, b"app_log") + _field(4, b"{}")
        bad_cat = _field(1, good.event_id.encode()[:-1] + b"0") + _field(2, b"app\xfflog") + _field(4, b"{}")
        body = _field(1, bad_id) + _field(1, bad_cat) + _field(1, good.SerializeToString())
        try:
            answer = raw(body, timeout=10)
        except grpc.RpcError as err:  # refusing the whole request is an answer too
            assert err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.INTERNAL)
        else:
            from service.contract import PublishResponse

            resp = PublishResponse.FromString(answer)
            assert len(resp.statuses) == 3, resp
            assert [s.code != StatusCode.ACCEPTED for s in resp.statuses[:2]] == [True, True]
            assert all(s.message for s in resp.statuses[:2])
            assert good.event_id not in published_event_ids(pub) or resp.statuses[2].code == StatusCode.ACCEPTED
        channel.close()
        _still_serving(stub)


def test_a_hundred_thousand_attributes_are_rejected_with_a_reason(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (_fe, stub, pub):
        many = event()
        many.attributes.update({f"k{i}": "v" for i in range(100_000)})
        good = event()
        resp = stub.Publish(request(many, good), timeout=30)
        assert [s.code for s in resp.statuses] == [StatusCode.TOO_MANY_ATTRIBUTES, StatusCode.ACCEPTED]
        assert "100000" in resp.statuses[0].message
        assert published_event_ids(pub) == [good.event_id]
        _still_serving(stub)


def test_message_larger_than_max_receive_is_refused_and_the_server_survives(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (_fe, stub, _pub):  # default limit: 16 MiB
        huge = [event(category="trace_span", payload=b"x" * (1 << 20)) for _ in range(17)]
        with pytest.raises(grpc.RpcError) as err:
            stub.Publish(request(*huge), timeout=30)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        _still_serving(stub)


def test_oversized_payload_and_huge_event_id_are_per_event_rejections(tmp_path: Path) -> None:
    with running_frontend(tmp_path, max_payload_bytes=1024) as (_fe, stub, pub):
        big = event(category="trace_span", payload=b"x" * 2048)
        long_id = Event(event_id="x" * 100_000, category="app_log", payload=b"{}")
        long_id.event_time.CopyFrom(big.event_time)
        good = event()
        resp = stub.Publish(request(big, long_id, good), timeout=10)
        assert [s.code for s in resp.statuses] == [
            StatusCode.PAYLOAD_TOO_LARGE,
            StatusCode.INVALID_EVENT_ID,
            StatusCode.ACCEPTED,
        ]
        assert published_event_ids(pub) == [good.event_id]
        _still_serving(stub)
