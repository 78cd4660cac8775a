"""Property-based: random and hostile requests never crash the servicer; one status per event; accepted events land."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.client.ids import uuid7_str
from service.contract import Event, PublishRequest, StatusCode
from service.envelope import decode
from tests.unit.frontend_support import running_frontend

pytestmark = pytest.mark.unit

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
payloads = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"", b"{", b"NaN", b'{"a":1}x', b"\xff\xfe", b"[" * 200]),
    st.just(b'"' + b"x" * 1_100_000 + b'"'),
)
event_ids = st.one_of(
    st.builds(lambda: str(uuid.uuid4())),
    st.builds(uuid7_str),
    st.just(""),
    st.text(max_size=40),
    st.sampled_from(["dup-" + "0" * 32, "00000000-0000-0000-0000-000000000000"]),
)
times = st.one_of(
    st.none(),
    st.floats(min_value=-7200, max_value=7200).map(lambda d: (int(time.time() + d), 0)),
    st.tuples(st.integers(min_value=-(2**40), max_value=2**40), st.integers(min_value=-(2**31), max_value=2**31 - 1)),
)


@st.composite
def events(draw: Any) -> Event:
    e = Event(
        event_id=draw(event_ids),
        category=draw(st.sampled_from(["app_log", "ads_click", "trace_span", "login_event", "", "nope"])),
        payload=draw(payloads),
        producer=draw(st.text(max_size=10)),
    )
    t = draw(times)
    if t is not None:
        e.event_time.seconds, e.event_time.nanos = t
    e.attributes.update(draw(st.dictionaries(st.text(max_size=10), st.text(max_size=300), max_size=40)))
    return e


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with running_frontend(tmp) as handle:
        yield handle


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(events(), max_size=25), compact=st.booleans())
def test_random_requests_answer_every_event(frontend: Any, batch: list[Event], compact: bool) -> None:
    _fe, stub, pub = frontend
    before = len(pub.published)
    sent = [Event.FromString(e.SerializeToString()) for e in batch]
    resp = stub.Publish(PublishRequest(events=batch, omit_accepted_statuses=compact), timeout=30)
    assert resp.accepted + resp.rejected == len(batch)
    if compact:
        assert len(resp.statuses) == resp.rejected
        rejected_idx = {s.index for s in resp.statuses}
        accepted = {e.event_id for i, e in enumerate(sent) if i not in rejected_idx and e.event_id}
    else:
        assert len(resp.statuses) == len(batch)
        assert [s.index for s in resp.statuses] == list(range(len(batch)))
        accepted = {s.event_id for s in resp.statuses if s.code == StatusCode.ACCEPTED}
        assert resp.accepted == len(accepted)
    assert all(s.message for s in resp.statuses if s.code != StatusCode.ACCEPTED)
    landed = set()
    for _topic, enc in pub.published[before:]:
        landed.update(e.event_id for e in decode(enc.data, enc.attributes).events)
    assert accepted <= landed


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=2000))
def test_hostile_bytes_never_crash_the_server(frontend: Any, blob: bytes) -> None:
    fe, stub, _pub = frontend
    channel = grpc.insecure_channel(f"127.0.0.1:{fe.port}")
    raw = channel.unary_unary("/logpipe.v1.Ingest/Publish")
    try:
        raw(blob, timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() != grpc.StatusCode.UNAVAILABLE
    finally:
        channel.close()
    assert stub.Publish(PublishRequest(), timeout=10).accepted == 0  # still serving


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(events(), max_size=6), min_size=1, max_size=6))
def test_random_streams_answer_every_request(frontend: Any, batches: list[list[Event]]) -> None:
    _fe, stub, _pub = frontend
    reqs = [PublishRequest(events=b, sequence=i) for i, b in enumerate(batches)]
    responses = list(stub.PublishStream(iter(reqs), timeout=30))
    assert sorted(r.sequence for r in responses) == list(range(len(reqs)))
    for r in responses:
        assert r.accepted + r.rejected == len(batches[r.sequence]) == len(r.statuses)
