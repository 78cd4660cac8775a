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
