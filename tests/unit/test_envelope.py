"""The envelope wire format: round trip, attributes, and poison detection (G5)."""

from __future__ import annotations

import contextlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from service.contract import Envelope
from service.envelope import FORMAT, PoisonEnvelope, decode, encode

pytestmark = pytest.mark.unit


def _env(n: int = 3, category: str = "ads_click") -> Envelope:
    env = Envelope(envelope_id="env-1", category=category, frontend="fe-0")
    for i in range(n):
        e = env.events.add(event_id=f"id-{i}", category=category, payload=b'{"a":1}')
        e.event_time.seconds = 1_764_162_000 + i
    return env


def test_round_trip_and_attributes() -> None:
    enc = encode(_env(3))
    assert enc.attributes["logpipe_format"] == FORMAT
    assert enc.attributes["event_count"] == "3"
    assert enc.attributes["min_event_time"] == "2025-11-26T13:00:00.000000Z"
    assert enc.attributes["max_event_time"] == "2025-11-26T13:00:02.000000Z"
    back = decode(enc.data, enc.attributes)
    assert back == _env(3)


def test_requires_id_and_category() -> None:
    with pytest.raises(ValueError):
        encode(Envelope(category="ads_click"))


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d, a: (d, {**a, "logpipe_format": "other"}), "unknown_format"),
        (lambda d, a: (d, {**a, "logpipe_compression": "gzip"}), "unknown_compression"),
        (lambda d, a: (b"not zstd", a), "bad_compression"),
        (lambda d, a: (zstandard.ZstdCompressor().compress(b"\xff\xff\xff"), a), "bad_protobuf"),
        (lambda d, a: (d, {**a, "envelope_id": "other"}), "attribute_mismatch"),
        (lambda d, a: (d, {**a, "uncompressed_bytes": str(10**12)}), "too_large"),
    ],
)
def test_poison_reasons(mutate: object, reason: str) -> None:
    enc = encode(_env())
    data, attrs = mutate(enc.data, enc.attributes)  # type: ignore[operator]
    with pytest.raises(PoisonEnvelope) as info:
        decode(data, attrs)
    assert info.value.reason == reason


def test_zip_bomb_is_bounded() -> None:
    env = _env(1)
    env.events[0].payload = b"\0" * 5_000_000
    enc = encode(env)
    attrs = {**enc.attributes, "uncompressed_bytes": "1"}  # lies about its size
    with pytest.raises(PoisonEnvelope) as info:
        decode(enc.data, attrs, max_uncompressed=1_000_000)
    assert info.value.reason == "too_large"


def test_mixed_categories_are_poison() -> None:
    env = _env(2)
    env.events[1].category = "login_event"
    enc = encode(env)
    with pytest.raises(PoisonEnvelope) as info:
        decode(enc.data, enc.attributes)
    assert info.value.reason == "mixed_categories"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048), st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=8))
def test_arbitrary_bytes_never_crash(data: bytes, attrs: dict[str, str]) -> None:
    base = {"logpipe_format": FORMAT, "logpipe_compression": "zstd"}
    for a in (attrs, {**attrs, **base}):
        with contextlib.suppress(PoisonEnvelope):
            decode(data, a)


def test_encode_serialized_equals_encode() -> None:
    from service.envelope import encode_serialized

    env = _env(4)
    env.events[2].event_time.seconds -= 10
    env.events[1].event_time.nanos = 999_999
    want = encode(env, level=1)
    micros = [e.event_time.seconds * 1_000_000 + e.event_time.nanos // 1000 for e in env.events]
    got = encode_serialized(
        env.SerializeToString(),
        envelope_id=env.envelope_id,
        category=env.category,
        event_count=len(env.events),
        min_event_micros=min(micros),
        max_event_micros=max(micros),
        level=1,
    )
    assert got == want
    assert got.attributes["min_event_time"] == "2025-11-26T12:59:52.000000Z"
    assert got.attributes["max_event_time"] == "2025-11-26T13:00:03.000000Z"
    assert decode(got.data, got.attributes) == env


@pytest.mark.parametrize("level", [-7, -1, 1, 19])
def test_every_configurable_level_decodes(level: int) -> None:
    env = _env(5)
    encoded = encode(env, level=level)
    assert decode(encoded.data, encoded.attributes) == env


# --- what landing refuses because the finalizer could not convert or name it (G5) ---
def _one_bad(mutate: object, category: str = "ads_click") -> tuple[bytes, dict[str, str]]:
    env = _env(3, category)
    mutate(env.events[1])  # type: ignore[operator]
    raw = env.SerializeToString()
    return zstandard.ZstdCompressor().compress(raw), {"logpipe_format": FORMAT, "logpipe_compression": "zstd"}


@pytest.mark.parametrize(
    ("field", "seconds", "nanos", "reason"),
    [
        ("event_time", 10**12, 0, "event_time_out_of_range"),  # year ~33658: micros_to_datetime would overflow
        ("event_time", -(10**12), 0, "event_time_out_of_range"),
        ("event_time", -30_610_224_001, 0, "event_time_out_of_range"),  # 0999-12-31T23:59:59Z
        ("event_time", 253_370_764_800, 0, "event_time_out_of_range"),  # 9999-01-01T00:00:00Z
        ("event_time", 1_764_162_000, -1, "event_time_out_of_range"),
        ("event_time", 1_764_162_000, 1_000_000_000, "event_time_out_of_range"),
        ("ingest_time", 10**12, 0, "ingest_time_out_of_range"),
        ("ingest_time", 1_764_162_000, -5, "ingest_time_out_of_range"),
        ("event_time", -30_610_224_000, 0, None),  # 1000-01-01T00:00:00Z
        ("event_time", 253_370_764_799, 999_999_999, None),  # 9998-12-31T23:59:59.999999999Z
        ("ingest_time", 0, 999_999_999, None),
    ],
)
def test_event_and_ingest_time_ranges(field: str, seconds: int, nanos: int, reason: str | None) -> None:
    def mutate(e: object) -> None:
        ts = getattr(e, field)
        ts.seconds, ts.nanos = seconds, nanos

    data, attrs = _one_bad(mutate)
    if reason is None:
        assert len(decode(data, attrs).events) == 3
        return
    with pytest.raises(PoisonEnvelope) as info:
        decode(data, attrs)
    assert info.value.reason == reason
    assert info.value.detail.startswith(f"event 1 ('id-1') has {field} seconds={seconds} nanos={nanos}, outside")


def test_a_json_categorys_payload_must_be_utf8_a_bytes_ones_need_not() -> None:
    data, attrs = _one_bad(lambda e: setattr(e, "payload", b'{"a":"\xff"}'))
    with pytest.raises(PoisonEnvelope) as info:
        decode(data, attrs, json_categories={"ads_click"})
    assert (info.value.reason, info.value.detail) == (
        "payload_not_utf8",
        "event 1 ('id-1') of json category 'ads_click': payload is not UTF-8 (byte 6)",
    )
    assert len(decode(data, attrs, json_categories={"login_event"}).events) == 3  # ads_click is not json here
    assert len(decode(data, attrs).events) == 3


@pytest.mark.parametrize(
    ("envelope_id", "reason"),
    [
        ("a" * 1100, "bad_envelope_id"),
        ("a" * 129, "bad_envelope_id"),
        ("x\ny", "bad_envelope_id"),
        ("abc\n", "bad_envelope_id"),
        ("a/b", "bad_envelope_id"),
        ("../../logs/x", "bad_envelope_id"),
        ("é", "bad_envelope_id"),
        ("", "missing_envelope_id"),
        ("a" * 128, None),
        ("bench-1-0000001", None),
        ("env-1", None),
        ("A.z_0-9", None),
    ],
)
def test_envelope_ids(envelope_id: str, reason: str | None) -> None:
    env = _env(1)
    env.envelope_id = envelope_id
    data = zstandard.ZstdCompressor().compress(env.SerializeToString())
    attrs = {"logpipe_format": FORMAT, "logpipe_compression": "zstd"}
    if reason is None:
        assert decode(data, attrs).envelope_id == envelope_id
        return
    with pytest.raises(PoisonEnvelope) as info:
        decode(data, attrs)
    assert info.value.reason == reason


def test_every_id_we_generate_is_a_valid_envelope_id() -> None:
    """The front-end's UUIDv7s, the synth helpers' UUIDs and the bench ids all pass; so does the spool's file name
    use of them (``<seq>-<envelope_id>.env``)."""
    import datetime as dt
    import random

    from replicator.bench_backlog import envelopes
    from replicator.synth import make_envelope, random_payload_envelope
    from service.client.ids import uuid7_str
    from service.envelope import ENVELOPE_ID_RE

    hour = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
    ids = [uuid7_str() for _ in range(100)]
    ids += [make_envelope("ads_click", ["a"], hour).envelope_id]
    ids += [random_payload_envelope(random.Random(1), "app_log", 1, hour, 10).envelope_id]
    ids += [e.envelope_id for e in envelopes(2, 1, 200, hour, seed=7)]
    assert all(ENVELOPE_ID_RE.fullmatch(i) for i in ids), ids
    for enc in (make_envelope("ads_click", ["a"], hour), next(envelopes(1, 3, 200, hour))):
        assert decode(enc.data, enc.attributes, json_categories={"ads_click", "app_log"}).envelope_id == enc.envelope_id
