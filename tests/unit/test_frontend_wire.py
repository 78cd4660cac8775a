"""Framing + stamp bytes parse to exactly the Envelope that setting the fields one by one would give."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.contract import Envelope, Event
from service.frontend.wire import frame, stamp, varint

pytestmark = pytest.mark.unit


@st.composite
def events(draw: st.DrawFn) -> Event:
    e = Event(
        event_id=draw(st.text(max_size=40)),
        category=draw(st.text(max_size=10)),
        payload=draw(st.binary(max_size=20_000)),
        producer=draw(st.text(max_size=10)),
        client_id=draw(st.text(max_size=10)),  # forged by the client: must be overridden
    )
    if draw(st.booleans()):
        e.ingest_time.seconds = draw(st.integers(min_value=0, max_value=2**40))
        e.ingest_time.nanos = draw(st.integers(min_value=0, max_value=999_999_999))
    if draw(st.booleans()):
        e.event_time.seconds = draw(st.integers(min_value=0, max_value=2**40))
    e.attributes.update(draw(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)))
    return e


@given(
    batch=st.lists(events(), max_size=8),
    seconds=st.integers(min_value=0, max_value=2**40),
    nanos=st.integers(min_value=0, max_value=999_999_999),
    client=st.text(max_size=300),
)
def test_framed_events_equal_field_by_field_stamping(batch: list[Event], seconds: int, nanos: int, client: str) -> None:
    expected = Envelope()
    for e in batch:
        x = expected.events.add()
        x.CopyFrom(e)
        x.ingest_time.seconds, x.ingest_time.nanos = seconds, nanos
        x.client_id = client
    sizes, parts = frame([e.SerializeToString() for e in batch], stamp(seconds, nanos, client))
    got = Envelope.FromString(b"".join(parts))
    assert len(parts) == 3 * len(batch)
    assert [len(b"".join(parts[3 * i : 3 * i + 3])) for i in range(len(batch))] == sizes
    assert got == expected


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16383, 16384, 2**35])
def test_varint_matches_protobuf(n: int) -> None:
    from google.protobuf.internal.encoder import _VarintBytes

    assert varint(n) == _VarintBytes(n)


@given(
    batch=st.lists(events(), max_size=5),
    envelope_id=st.text(max_size=40),
    category=st.text(max_size=10),
    frontend=st.text(max_size=10),
    created_s=st.integers(min_value=0, max_value=2**40),
    created_nanos=st.integers(min_value=0, max_value=999_999_999),
)
def test_envelope_header_plus_frames_equal_field_setting(
    batch: list[Event], envelope_id: str, category: str, frontend: str, created_s: int, created_nanos: int
) -> None:
    from service.frontend.wire import envelope_header

    expected = Envelope(envelope_id=envelope_id, category=category, frontend=frontend)
    expected.created.seconds = created_s
    expected.created.nanos = created_nanos
    expected.events.extend(batch)
    _sizes, parts = frame([e.SerializeToString() for e in batch], b"")
    got = Envelope.FromString(
        envelope_header(envelope_id, category, frontend, created_s, created_nanos) + b"".join(parts)
    )
    assert got == expected
    assert got.HasField("created")
