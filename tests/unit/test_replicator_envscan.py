"""``replicator._envscan.scan`` (C) only accepts what the reference accepts, with the reference's facts (G5).

The reference is ``service.envelope.decode`` on the same body: upb's parse plus the envelope/event checks. The scan
may return None for a valid body it does not handle (unknown fields, other wire types), never the other way round;
for envelopes as the front-end writes them it must accept exactly when the reference does. Every comparison runs in
both payload modes: ``scan(body, True)`` against the reference for a json category (payloads must be UTF-8) and
``scan(body, False)`` against it for a bytes category."""

from __future__ import annotations

import random

import pytest
import zstandard
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from replicator import decode as fast_decode
from service.contract import Envelope
from service.envelope import END_TIME_SECONDS, FORMAT, MIN_TIME_SECONDS, PoisonEnvelope, decode
from service.frontend.wire import varint

pytestmark = pytest.mark.unit
ATTRS = {"logpipe_format": FORMAT, "logpipe_compression": "zstd"}
_ZSTD = zstandard.ZstdCompressor(level=1)
MODES = (True, False)  # json_payloads: the envelope's category is a json one, or a bytes one


class _Every(frozenset[str]):
    """``json_categories`` for the reference that contains every category (the scan's ``json_payloads=True``)."""

    def __contains__(self, item: object) -> bool:
        return True


def _scan(raw: bytes, json_payloads: bool = True) -> tuple[str, str, int] | None:
    assert fast_decode.SCAN is not None
    return fast_decode.SCAN(raw, json_payloads)


def _reference(raw: bytes, json_payloads: bool = True) -> tuple[str, str, int] | None:
    """The reference's facts for a body, or None when it is poison."""
    try:
        env = decode(_ZSTD.compress(raw), ATTRS, json_categories=_Every() if json_payloads else frozenset())
    except PoisonEnvelope:
        return None
    return env.envelope_id, env.category, len(env.events)


def _reason(raw: bytes, json_payloads: bool = True) -> str | None:
    try:
        decode(_ZSTD.compress(raw), ATTRS, json_categories=_Every() if json_payloads else frozenset())
    except PoisonEnvelope as p:
        return p.reason
    return None


def _only_accepts(raw: bytes) -> tuple[str, str, int] | None:
    """Asserts the scan's contract for ``raw`` in both modes; returns the reference's verdict (json mode)."""
    for mode in MODES:
        got = _scan(raw, mode)
        ref = _reference(raw, mode)
        if got is not None:
            assert got == ref, (mode, raw[:200])
    return _reference(raw)


def _exact(raw: bytes) -> None:
    """For bodies the scan handles: the same verdict as the reference, accept and reject alike, in both modes."""
    for mode in MODES:
        assert _scan(raw, mode) == _reference(raw, mode), (mode, raw[:200])


def test_the_extension_is_built() -> None:
    """A missing build (no compiler, a broken hatch hook) must fail CI, not make landing silently slower."""
    from replicator import _envscan

    assert fast_decode.SCAN is _envscan.scan


def _ld(field: int, payload: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def _event(eid: bytes = b"e-1", cat: bytes = b"app_log", extra: bytes = b"") -> bytes:
    return _ld(3, _ld(1, eid) + _ld(2, cat) + _ld(3, b"\x08\x80\xa4\xa3\xc9\x06\x10\x05") + _ld(4, b"{}") + extra)


def _body(*events: bytes, eid: bytes = b"env-1", cat: bytes = b"app_log", tail: bytes = b"") -> bytes:
    return _ld(1, eid) + _ld(2, cat) + b"".join(events) + _ld(4, b"fe") + tail


def _ts(seconds: int | None = None, nanos: int | None = None) -> bytes:
    """A google.protobuf.Timestamp's wire bytes (int64/int32 as two's complement varints, as protobuf writes them)."""
    out = b""
    if seconds is not None:
        out += b"\x08" + varint(seconds & (2**64 - 1))
    if nanos is not None:
        out += b"\x10" + varint(nanos & (2**64 - 1))
    return out


def _timed(field: int, seconds: int | None = None, nanos: int | None = None) -> bytes:
    """A body whose one event has ``field`` (3 = event_time, 7 = ingest_time) set by a further occurrence (which
    merges into the first one, as upb does)."""
    return _body(_event(extra=_ld(field, _ts(seconds, nanos))))


GOOD = _body(_event(b"a"), _event(b"b", extra=_ld(5, _ld(1, b"k") + _ld(2, b"v")) + _ld(6, b"p") + _ld(8, b"c")))

# Hand-made bodies: each kind of bad input the reference rejects, each way the wire can be odd, and the proto3
# last-one-wins rules. (name, body)
WIRE_CASES: dict[str, bytes] = {
    "good": GOOD,
    "empty": b"",
    "no_events": _body(),
    "category_after_events": _ld(1, b"x") + _event() + _ld(2, b"app_log"),
    "envelope_id_last_empty": _body(_event(), tail=_ld(1, b"")),
    "envelope_id_last_set": _body(_event(), eid=b"", tail=_ld(1, b"late")),
    "event_id_last_empty": _body(_event(extra=_ld(1, b""))),
    "event_id_last_set": _body(_event(eid=b"", extra=_ld(1, b"late"))),
    "event_category_last_other": _body(_event(extra=_ld(2, b"other"))),
    "event_category_last_fixes": _body(_event(cat=b"other", extra=_ld(2, b"app_log"))),
    "envelope_category_last_other": _body(_event(), tail=_ld(2, b"other")),
    "missing_envelope_id": _body(_event(), eid=b""),
    "mixed_categories": _body(_event(), _event(cat=b"other")),
    "missing_event_id": _body(_event(), _event(eid=b"")),
    "event_without_category": _body(_event(cat=b"")),
    "empty_category_everywhere": _body(_event(cat=b""), cat=b""),
    "empty_event": _body(_ld(3, b"")),
    "unknown_envelope_field": _body(_event(), tail=_ld(9, b"x")),
    "unknown_event_field": _body(_event(extra=b"\x48\x01")),
    "known_field_other_wire_type": _body(_event(), tail=b"\x08\x01"),
    "event_id_as_varint": _body(_event(extra=b"\x08\x01")),
    "group": _body(_event(), tail=b"\x4b\x4c"),
    "field_zero": _body(_event(), tail=b"\x02\x00"),
    "wire_type_7": _body(_event(), tail=b"\x0f"),
    "overlong_tag": b"\x8a\x00\x05env-1" + _body(_event()),
    "overlong_length": _body(_event(), tail=b"\x0a\x85\x00env-1"),
    "six_byte_length": _body(_event(), tail=b"\x0a\x85\x80\x80\x80\x80\x00env-1"),
    "length_past_end": _body(_event(), tail=b"\x22\x05ab"),
    "huge_length": _body(_event(), tail=b"\x22\xff\xff\xff\xff\x0f"),
    "truncated_tag": _body(_event(), tail=b"\x8a"),
    "timestamp_10_byte_varint": _body(_event(extra=_ld(3, b"\x08" + b"\xff" * 9 + b"\x01"))),
    "timestamp_10_byte_varint_high": _body(_event(extra=_ld(3, b"\x08" + b"\xff" * 9 + b"\x7f"))),
    "timestamp_11_byte_varint": _body(_event(extra=_ld(3, b"\x08" + b"\xff" * 10 + b"\x01"))),
    "timestamp_truncated_varint": _body(_event(extra=_ld(3, b"\x08\xff"))),
    "timestamp_unknown_field": _body(_event(extra=_ld(7, b"\x18\x01"))),
    "created": _body(_event(), tail=_ld(5, b"\x08\x01\x10\x02")),
    "created_bad": _body(_event(), tail=_ld(5, b"\x08")),
    "map_entry_bad_utf8_key": _body(_event(extra=_ld(5, _ld(1, b"\xc0\x80")))),
    "map_entry_bad_utf8_value": _body(_event(extra=_ld(5, _ld(2, b"\xed\xa0\x80")))),
    "map_entry_unknown_field": _body(_event(extra=_ld(5, b"\x18\x01"))),
    "map_entry_empty": _body(_event(extra=_ld(5, b""))),
    "payload_not_utf8": _body(_event(extra=_ld(4, b"\xff\xfe"))),
    "producer_not_utf8": _body(_event(extra=_ld(6, b"\xff"))),
    "frontend_not_utf8": _body(_event(), tail=_ld(4, b"\x80")),
    "client_id_not_utf8": _body(_event(extra=_ld(8, b"\xf5\x80\x80\x80"))),
}
# What landing must refuse because the finalizer cannot convert it (times, JSON payload text) or name it (ids), each
# with the reference's reason (None: valid). (name, body, reason in a json category, reason in a bytes category)
POISON_CASES: dict[str, tuple[bytes, str | None, str | None]] = {
    "event_time_1e12": (_timed(3, 10**12), "event_time_out_of_range", "event_time_out_of_range"),
    "event_time_min": (_timed(3, MIN_TIME_SECONDS), None, None),
    "event_time_below_min": (_timed(3, MIN_TIME_SECONDS - 1), "event_time_out_of_range", "event_time_out_of_range"),
    "event_time_last": (_timed(3, END_TIME_SECONDS - 1, 999_999_999), None, None),
    "event_time_end": (_timed(3, END_TIME_SECONDS), "event_time_out_of_range", "event_time_out_of_range"),
    "event_time_int64_min": (_timed(3, -(2**63)), "event_time_out_of_range", "event_time_out_of_range"),
    "event_time_int64_max": (_timed(3, 2**63 - 1), "event_time_out_of_range", "event_time_out_of_range"),
    "event_time_negative_nanos": (_timed(3, nanos=-1), "event_time_out_of_range", "event_time_out_of_range"),
    "event_time_1e9_nanos": (_timed(3, nanos=10**9), "event_time_out_of_range", "event_time_out_of_range"),
    "event_time_int32_min_nanos": (_timed(3, nanos=-(2**31)), "event_time_out_of_range", "event_time_out_of_range"),
    # An int32 read from a wider varint keeps its low 32 bits (upb): 2**32 + 5 is 5.
    "event_time_nanos_past_32_bits": (_timed(3, nanos=2**32 + 5), None, None),
    "event_time_nanos_low_bits_bad": (_timed(3, nanos=2**33 - 1), "event_time_out_of_range", "event_time_out_of_range"),
    "event_time_merged_bad_then_good": (
        _body(_event(extra=_ld(3, _ts(10**12)) + _ld(3, _ts(1_764_162_000)))),
        None,
        None,
    ),
    "event_time_merged_keeps_bad_seconds": (
        _body(_event(extra=_ld(3, _ts(10**12)) + _ld(3, _ts(nanos=5)))),
        "event_time_out_of_range",
        "event_time_out_of_range",
    ),
    "ingest_time_1e12": (_timed(7, 10**12), "ingest_time_out_of_range", "ingest_time_out_of_range"),
    "ingest_time_below_min": (_timed(7, MIN_TIME_SECONDS - 1), "ingest_time_out_of_range", "ingest_time_out_of_range"),
    "ingest_time_end": (_timed(7, END_TIME_SECONDS), "ingest_time_out_of_range", "ingest_time_out_of_range"),
    "ingest_time_negative_nanos": (_timed(7, 5, -1), "ingest_time_out_of_range", "ingest_time_out_of_range"),
    "ingest_time_ok": (_timed(7, 1_764_162_000, 999_999_999), None, None),
    "ingest_time_empty": (_body(_event(extra=_ld(7, b""))), None, None),
    "created_out_of_range": (_body(_event(), tail=_ld(5, _ts(10**12, -1))), None, None),  # not an event's time
    "payload_not_utf8": (_body(_event(extra=_ld(4, b"\xff\xfe{"))), "payload_not_utf8", None),
    "payload_surrogate": (_body(_event(extra=_ld(4, b'{"a":"\xed\xa0\x80"}'))), "payload_not_utf8", None),
    "payload_bad_after_16_ascii": (_body(_event(extra=_ld(4, b"x" * 16 + b"\xc3"))), "payload_not_utf8", None),
    "payload_bad_last_wins": (_body(_event(extra=_ld(4, b"\xff") + _ld(4, b"{}"))), None, None),
    "payload_good_then_bad": (_body(_event(extra=_ld(4, b"{}") + _ld(4, b"\xff"))), "payload_not_utf8", None),
    "payload_utf8_long": (_body(_event(extra=_ld(4, ("é€😀" * 40 + "a" * 17).encode()))), None, None),
    "payload_binary_second_event": (
        _body(_event(b"a"), _event(b"b", extra=_ld(4, bytes(range(256))))),
        "payload_not_utf8",
        None,
    ),
    "envelope_id_uuid7": (_body(_event(), eid=b"019ac5e2-7f3b-7c1d-9a4e-0123456789ab"), None, None),
    "envelope_id_bench": (_body(_event(), eid=b"bench-1-0000001"), None, None),
    "envelope_id_128": (_body(_event(), eid=b"a" * 128), None, None),
    "envelope_id_all_classes": (_body(_event(), eid=b"AZaz09._-"), None, None),
    "envelope_id_129": (_body(_event(), eid=b"a" * 129), "bad_envelope_id", "bad_envelope_id"),
    "envelope_id_1100": (_body(_event(), eid=b"a" * 1100), "bad_envelope_id", "bad_envelope_id"),
    "envelope_id_newline": (_body(_event(), eid=b"x\ny"), "bad_envelope_id", "bad_envelope_id"),
    "envelope_id_trailing_newline": (_body(_event(), eid=b"xy\n"), "bad_envelope_id", "bad_envelope_id"),
    "envelope_id_slash": (_body(_event(), eid=b"../../logs/x"), "bad_envelope_id", "bad_envelope_id"),
    "envelope_id_space": (_body(_event(), eid=b"a b"), "bad_envelope_id", "bad_envelope_id"),
    "envelope_id_non_ascii": (_body(_event(), eid="ü".encode()), "bad_envelope_id", "bad_envelope_id"),
    "envelope_id_nul": (_body(_event(), eid=b"a\x00"), "bad_envelope_id", "bad_envelope_id"),
    "envelope_id_empty": (_body(_event(), eid=b""), "missing_envelope_id", "missing_envelope_id"),
    "envelope_id_last_bad": (_body(_event(), tail=_ld(1, b"a/b")), "bad_envelope_id", "bad_envelope_id"),
}
UTF8 = {
    "ascii": b"abc",
    "two_byte": "é".encode(),
    "three_byte": "€".encode(),
    "four_byte": "😀".encode(),
    "max": "\U0010ffff".encode(),
    "overlong_2": b"\xc1\xbf",
    "overlong_3": b"\xe0\x9f\xbf",
    "overlong_4": b"\xf0\x8f\xbf\xbf",
    "surrogate": b"\xed\xa0\x80",
    "above_max": b"\xf4\x90\x80\x80",
    "f5": b"\xf5\x80\x80\x80",
    "lone_continuation": b"\x80",
    "truncated_2": b"\xc3",
    "truncated_3": b"\xe2\x82",
    "truncated_4": b"\xf0\x9f\x98",
    "bad_continuation": b"\xe2\x28\xa1",
    "nul": b"a\x00b",
}


@pytest.mark.parametrize("case", sorted(WIRE_CASES))
def test_wire_cases(case: str) -> None:
    _only_accepts(WIRE_CASES[case])


def test_the_scan_accepts_what_it_should() -> None:
    accepted = {k for k, raw in WIRE_CASES.items() if _scan(raw) is not None}
    assert accepted == {
        "good",
        "no_events",
        "category_after_events",
        "envelope_id_last_set",
        "event_id_last_set",
        "event_category_last_fixes",
        "empty_category_everywhere",
        "overlong_tag",
        "overlong_length",
        "timestamp_10_byte_varint",
        "created",
        "map_entry_empty",
    }
    # In a bytes category the payload is opaque: its UTF-8 does not matter.
    assert {k for k, raw in WIRE_CASES.items() if _scan(raw, False) is not None} == accepted | {"payload_not_utf8"}
    assert _scan(GOOD) == _scan(GOOD, False) == ("env-1", "app_log", 2)


@pytest.mark.parametrize("case", sorted(POISON_CASES))
def test_poison_cases_have_the_reference_reason_and_the_scan_agrees(case: str) -> None:
    """Each out-of-range time, bad envelope id and non-UTF-8 json payload is poison with its reason in the
    reference; the scan accepts exactly the valid ones (these are all bodies it handles)."""
    raw, json_reason, bytes_reason = POISON_CASES[case]
    assert (_reason(raw, True), _reason(raw, False)) == (json_reason, bytes_reason)
    _exact(raw)
    assert (_scan(raw, True) is not None, _scan(raw, False) is not None) == (json_reason is None, bytes_reason is None)


def test_the_scan_defaults_to_checking_payloads() -> None:
    """Without the mode argument the scan is the strict one: it can only accept less."""
    from replicator._envscan import scan

    raw = POISON_CASES["payload_not_utf8"][0]
    assert scan(raw) is None
    assert scan(raw, False) is not None


@pytest.mark.parametrize("case", sorted(UTF8))
@pytest.mark.parametrize(
    "where", ["envelope_id", "category", "event_id", "producer", "map_value", "frontend", "payload"]
)
def test_utf8_as_upb(case: str, where: str) -> None:
    s = UTF8[case]
    bodies = {
        "envelope_id": _body(_event(), eid=s),
        "category": _body(_event(cat=s), cat=s),
        "event_id": _body(_event(eid=s)),
        "producer": _body(_event(extra=_ld(6, s))),
        "map_value": _body(_event(extra=_ld(5, _ld(1, b"k") + _ld(2, s)))),
        "frontend": _body(_event(), tail=_ld(4, s)),
        "payload": _body(_event(extra=_ld(4, b"0123456789abcdef" + s + b"ghij"))),  # after the 8-byte ASCII steps
    }
    _exact(bodies[where])


def test_any_buffer_and_only_buffers() -> None:
    assert _scan(bytearray(GOOD)) == _scan(memoryview(GOOD)) == _scan(GOOD)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _scan("text")  # type: ignore[arg-type]


def test_every_truncation_of_a_real_envelope() -> None:
    env = Envelope(envelope_id="env-7", category="app_log", frontend="fe")
    for i in range(5):
        e = env.events.add(event_id=f"id-{i}", category="app_log", payload=b'{"x":"\xc3\xa9"}', producer="p")
        e.event_time.seconds = 1_764_162_000 + i
        e.attributes["k"] = "v\u20ac"
    raw = env.SerializeToString()
    assert _scan(raw) == ("env-7", "app_log", 5)
    for n in range(len(raw)):
        _only_accepts(raw[:n])


def test_single_byte_mutations_of_a_real_envelope() -> None:
    rng = random.Random(4)
    raw = bytearray(GOOD)
    for _ in range(3000):
        m = bytearray(raw)
        i = rng.randrange(len(m))
        op = rng.randrange(3)
        if op == 0:
            m[i] = rng.randrange(256)
        elif op == 1:
            del m[i]
        else:
            m.insert(i, rng.randrange(256))
        _only_accepts(bytes(m))


# --- generated envelopes: the shapes the front-end writes, and every kind of bad one ---
_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=6)
_cats = st.sampled_from(["app_log", "ads_click", "", "é"])
_ids = st.one_of(  # mostly valid ids, so that the events' checks get their turn
    st.just("env-1"),
    st.just("bench-1-0000001"),
    st.sampled_from(["", "ü", "a/b", "x\n", "a" * 128, "a" * 129]),
)
# Seconds: mostly the edges of the accepted range and ordinary times, sometimes anything an int64 holds.
_seconds = st.one_of(
    st.sampled_from([MIN_TIME_SECONDS - 1, MIN_TIME_SECONDS, 0, END_TIME_SECONDS - 1, END_TIME_SECONDS, 10**12]),
    st.integers(MIN_TIME_SECONDS, END_TIME_SECONDS - 1),
    st.integers(-(2**63), 2**63 - 1),
)
_nanos = st.one_of(st.integers(0, 999_999_999), st.sampled_from([-1, 10**9]), st.integers(-(2**31), 2**31 - 1))
_payloads = st.one_of(st.binary(max_size=8), _text.map(str.encode), st.binary(min_size=9, max_size=40))


@st.composite
def _envelopes(draw: st.DrawFn) -> Envelope:
    env = Envelope(envelope_id=draw(_ids), category=draw(_cats))
    if draw(st.booleans()):
        env.frontend = draw(_text)
    if draw(st.booleans()):
        env.created.seconds = draw(st.integers(-(2**63), 2**63 - 1))
    for _ in range(draw(st.integers(0, 4))):
        e = env.events.add(
            event_id=draw(st.sampled_from(["id", "", "ïd"])),
            category=draw(st.one_of(st.just(env.category), _cats)),
            payload=draw(_payloads),
            producer=draw(_text),
            client_id=draw(_text),
        )
        if draw(st.booleans()):
            e.event_time.seconds = draw(_seconds)
            e.event_time.nanos = draw(_nanos)
        if draw(st.booleans()):
            e.ingest_time.seconds = draw(_seconds)
            e.ingest_time.nanos = draw(_nanos)
        for k, v in draw(st.dictionaries(_text, _text, max_size=2)).items():
            e.attributes[k] = v
    return env


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_envelopes())
def test_generated_envelopes_same_verdict(env: Envelope) -> None:
    _exact(env.SerializeToString())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_envelopes(), min_size=1, max_size=3))
def test_concatenated_serializations_merge_as_upb(envs: list[Envelope]) -> None:
    """Concatenated messages merge (last singular value wins, repeated fields append): the scan agrees."""
    _exact(b"".join(e.SerializeToString() for e in envs))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_envelopes(), st.data())
def test_mutated_envelopes_only_accept(env: Envelope, data: st.DataObject) -> None:
    raw = bytearray(env.SerializeToString())
    assume(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i : i + data.draw(st.integers(0, 3))] = data.draw(st.binary(max_size=3))
        if not raw:
            break
    _only_accepts(bytes(raw))


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_accept(raw: bytes) -> None:
    _only_accepts(raw)


def test_large_envelope() -> None:
    env = Envelope(envelope_id="big", category="app_log")
    for i in range(2000):
        env.events.add(event_id=f"{i:05d}", category="app_log", payload=b"x" * 1000)
    raw = env.SerializeToString()
    assert _scan(raw) == ("big", "app_log", 2000)
    env.events[1999].event_id = ""
    assert _scan(env.SerializeToString()) is None
