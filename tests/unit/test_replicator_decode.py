"""``replicator.decode.decode_envelope`` gives the verdict of ``service.envelope.decode`` for every input (G5).

Each case runs both and compares: the same Envelope, or the same ``PoisonEnvelope`` reason AND detail. Every case
runs twice: with the C wire scan (``replicator._envscan``) and with the pure-Python check used without it."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from replicator import decode as fast_decode
from service.contract import Envelope
from service.envelope import END_TIME_SECONDS, FORMAT, MIN_TIME_SECONDS, PoisonEnvelope, decode, encode

pytestmark = pytest.mark.unit
Attrs = dict[str, str]


def _env(n: int = 3, category: str = "ads_click") -> Envelope:
    env = Envelope(envelope_id="env-1", category=category, frontend="fe-0")
    for i in range(n):
        e = env.events.add(event_id=f"id-{i}", category=category, payload=b'{"a":1}')
        e.event_time.seconds = 1_764_162_000 + i
    return env


@contextmanager
def _path(name: str) -> Iterator[None]:
    """Runs the fast path with the C scan ("c") or without the extension ("python")."""
    saved = fast_decode.SCAN
    fast_decode.SCAN = saved if name == "c" else None
    try:
        yield
    finally:
        fast_decode.SCAN = saved


PATHS = ["c", "python"]


def _verdict(fn: Callable[..., Envelope], data: bytes, attrs: Attrs, **kw: Any) -> object:
    try:
        return fn(data, attrs, **kw).SerializeToString()
    except PoisonEnvelope as p:
        return ("poison", p.reason, p.detail)


def _same(data: bytes, attrs: Attrs, **kw: Any) -> object:
    ref = _verdict(decode, data, attrs, **kw)
    for name in PATHS:
        with _path(name):
            assert _verdict(fast_decode.decode_envelope, data, attrs, **kw) == ref, name
            checked = _verdict(lambda *a, **k: fast_decode.check_envelope(*a, **k).envelope(), data, attrs, **kw)
            assert checked == ref, name
    return ref


def _streamed(raw: bytes) -> bytes:
    """A zstd frame without a content size (written by a streaming compressor)."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as w:
        w.write(raw)
    return out.getvalue()


def _with_event(mutate: Callable[[Envelope], None]) -> tuple[bytes, Attrs]:
    env = _env(4)
    mutate(env)
    enc = encode(env)
    return enc.data, enc.attributes


BASE = {"logpipe_format": FORMAT, "logpipe_compression": "zstd"}
ENC = encode(_env())
RAW = _env().SerializeToString()
CASES: dict[str, tuple[bytes, Attrs]] = {
    "valid": (ENC.data, ENC.attributes),
    "valid_no_attributes_but_format": (ENC.data, BASE),
    "unknown_format": (ENC.data, {**ENC.attributes, "logpipe_format": "other"}),
    "unknown_compression": (ENC.data, {**ENC.attributes, "logpipe_compression": "gzip"}),
    "bad_compression": (b"not zstd", ENC.attributes),
    "truncated_frame": (ENC.data[:-7], ENC.attributes),
    "bad_protobuf": (zstandard.ZstdCompressor().compress(b"\xff\xff\xff"), ENC.attributes),
    "envelope_id_mismatch": (ENC.data, {**ENC.attributes, "envelope_id": "other"}),
    "category_mismatch": (ENC.data, {**ENC.attributes, "category": "login_event"}),
    "declared_too_large": (ENC.data, {**ENC.attributes, "uncompressed_bytes": str(10**12)}),
    "declared_not_a_number": (ENC.data, {**ENC.attributes, "uncompressed_bytes": "many"}),
    "no_content_size": (_streamed(RAW), ENC.attributes),
    "trailing_bytes": (ENC.data + b"junk", ENC.attributes),
    "two_frames": (ENC.data + ENC.data, ENC.attributes),
    "missing_envelope_id": (
        zstandard.ZstdCompressor().compress(Envelope(category="ads_click").SerializeToString()),
        BASE,
    ),
    "mixed_categories": _with_event(lambda e: setattr(e.events[2], "category", "login_event")),
    "missing_event_id": _with_event(lambda e: setattr(e.events[1], "event_id", "")),
    "both_bad_first_wins": _with_event(
        lambda e: (setattr(e.events[3], "category", "x"), setattr(e.events[1], "event_id", ""))
    ),
    "empty_envelope": _with_event(lambda e: e.ClearField("events")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_verdict_as_the_reference(case: str) -> None:
    data, attrs = CASES[case]
    verdict = _same(data, attrs)
    valid = {"valid", "valid_no_attributes_but_format", "no_content_size", "trailing_bytes", "two_frames"}
    valid |= {"declared_not_a_number", "empty_envelope"}
    assert isinstance(verdict, bytes) == (case in valid)


def test_size_limits_agree() -> None:
    env = _env(1)
    env.events[0].payload = b"\0" * 2_000_000
    enc = encode(env)
    lying = {**enc.attributes, "uncompressed_bytes": "1"}
    assert _same(enc.data, lying, max_uncompressed=1_000_000)[0] == "poison"  # type: ignore[index]
    assert isinstance(_same(enc.data, lying, max_uncompressed=3_000_000), bytes)


@pytest.mark.parametrize("name", PATHS)
def test_the_fast_path_is_taken_for_a_front_end_envelope(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Guards the speed-up itself: a normal envelope must not fall back to the reference."""

    def fail(*_: object, **__: object) -> Envelope:
        raise AssertionError("fell back to service.envelope.decode")

    monkeypatch.setattr(fast_decode.envelope_format, "decode", fail)
    with _path(name):
        checked = fast_decode.check_envelope(ENC.data, ENC.attributes)
        assert (checked.envelope_id, checked.category, checked.event_count) == ("env-1", "ads_click", 3)
        assert checked.envelope() == _env()
        assert (checked.body is None) == (name == "python")  # the scan does not parse the events


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048), st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=8))
def test_arbitrary_bytes_agree(data: bytes, attrs: Attrs) -> None:
    for a in (attrs, {**attrs, **BASE}):
        _same(data, a)
        _same(zstandard.ZstdCompressor().compress(data), a)


@pytest.mark.parametrize("name", PATHS)
def test_landing_without_claimed_hours_uses_the_checked_body(name: str) -> None:
    """No min/max attributes: the lander parses the checked body to find the hours, and still lands it verbatim."""
    from replicator.landing import Lander
    from replicator.metrics import Metrics
    from replicator.store import MemoryStore

    attrs = {k: v for k, v in ENC.attributes.items() if not k.endswith("_event_time")}
    empty = encode(Envelope(envelope_id="env-0", category="ads_click"))
    store = MemoryStore()
    with _path(name):
        landed = Lander(store, ["ads_click"], Metrics()).land(ENC.data, attrs)
        nothing = Lander(store, ["ads_click"], Metrics()).land(empty.data, empty.attributes)
    assert (landed.envelope_id, landed.category, landed.events, landed.created) == ("env-1", "ads_click", 3, 1)
    assert store.read(landed.names[0]) == ENC.data
    assert (nothing.names, nothing.events) == ((), 0)


# --- what the finalizer cannot convert or name is poison at landing, on every path (G1, G5) ---
JSON = frozenset({"ads_click"})  # ads_click is a json category, login_event a bytes one in these cases


def _bad(mutate: Callable[[Envelope], None], category: str = "ads_click") -> tuple[bytes, Attrs]:
    env = _env(4, category)
    mutate(env)
    raw = env.SerializeToString()  # encode() would compute min/max attributes, which a third party may not
    attrs = {**BASE, "envelope_id": env.envelope_id, "category": category, "uncompressed_bytes": str(len(raw))}
    return zstandard.ZstdCompressor().compress(raw), attrs


def _set(path: str, value: object) -> Callable[[Envelope], None]:
    """Sets ``events[2].<path>`` (e.g. ``event_time.seconds``)."""

    def mutate(env: Envelope) -> None:
        target: Any = env.events[2]
        *parents, leaf = path.split(".")
        for p in parents:
            target = getattr(target, p)
        setattr(target, leaf, value)

    return mutate


# (mutation, category, reason when the category is json, reason when not): None = valid
POISON: dict[str, tuple[Callable[[Envelope], None], str, str | None, str | None]] = {
    "event_time_1e12": (
        _set("event_time.seconds", 10**12),
        "ads_click",
        "event_time_out_of_range",
        "event_time_out_of_range",
    ),
    "event_time_before_year_1000": (
        _set("event_time.seconds", MIN_TIME_SECONDS - 1),
        "ads_click",
        "event_time_out_of_range",
        "event_time_out_of_range",
    ),
    "event_time_first_valid": (_set("event_time.seconds", MIN_TIME_SECONDS), "ads_click", None, None),
    "event_time_last_valid": (_set("event_time.seconds", END_TIME_SECONDS - 1), "ads_click", None, None),
    "event_time_year_9999": (
        _set("event_time.seconds", END_TIME_SECONDS),
        "ads_click",
        "event_time_out_of_range",
        "event_time_out_of_range",
    ),
    "event_time_negative_nanos": (
        _set("event_time.nanos", -1),
        "ads_click",
        "event_time_out_of_range",
        "event_time_out_of_range",
    ),
    "ingest_time_1e12": (
        _set("ingest_time.seconds", 10**12),
        "ads_click",
        "ingest_time_out_of_range",
        "ingest_time_out_of_range",
    ),
    "ingest_time_nanos_1e9": (
        _set("ingest_time.nanos", 10**9),
        "ads_click",
        "ingest_time_out_of_range",
        "ingest_time_out_of_range",
    ),
    "payload_not_utf8_json": (_set("payload", b"\xff\xfe{"), "ads_click", "payload_not_utf8", None),
    "payload_not_utf8_bytes": (_set("payload", b"\xff\xfe{"), "login_event", None, None),
    "envelope_id_1100": (
        lambda e: setattr(e, "envelope_id", "a" * 1100),
        "ads_click",
        "bad_envelope_id",
        "bad_envelope_id",
    ),
    "envelope_id_newline": (
        lambda e: setattr(e, "envelope_id", "x\ny"),
        "ads_click",
        "bad_envelope_id",
        "bad_envelope_id",
    ),
    "envelope_id_slash": (
        lambda e: setattr(e, "envelope_id", "a/b"),
        "ads_click",
        "bad_envelope_id",
        "bad_envelope_id",
    ),
    "envelope_id_empty": (
        lambda e: setattr(e, "envelope_id", ""),
        "ads_click",
        "missing_envelope_id",
        "missing_envelope_id",
    ),
    "envelope_id_bench": (lambda e: setattr(e, "envelope_id", "bench-1-0000001"), "ads_click", None, None),
}


@pytest.mark.parametrize("case", sorted(POISON))
@pytest.mark.parametrize("attrs_kind", ["full", "format_only"])
def test_unconvertible_envelopes_are_poison_on_every_path(case: str, attrs_kind: str) -> None:
    """The reference gives the reason; both fast paths agree (same reason and detail, never an accept). With only
    the format attributes the fast path does not know the category before the scan, and must still check."""
    mutate, category, json_reason, bytes_reason = POISON[case]
    data, attrs = _bad(mutate, category)
    if attrs_kind == "format_only":
        attrs = dict(BASE)
    for json_categories, want in (
        (JSON, json_reason if category in JSON else bytes_reason),
        (frozenset(), bytes_reason),
    ):
        verdict = _same(data, attrs, json_categories=json_categories)
        got = verdict[1] if isinstance(verdict, tuple) else None
        assert got == want, (json_categories, verdict)


@pytest.mark.parametrize("name", PATHS)
def test_the_fast_path_is_taken_for_a_json_category(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The new checks do not send a normal envelope (UTF-8 payloads, current times) to the reference."""

    def fail(*_: object, **__: object) -> Envelope:
        raise AssertionError("fell back to service.envelope.decode")

    monkeypatch.setattr(fast_decode.envelope_format, "decode", fail)
    with _path(name):
        for attrs in (ENC.attributes, BASE):
            checked = fast_decode.check_envelope(ENC.data, attrs, json_categories=JSON)
            assert (checked.envelope_id, checked.event_count) == ("env-1", 3)


def test_a_frame_stating_more_than_the_limit_is_refused_before_decompressing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bomb that states its size (any one-shot zstd compressor writes it) costs nothing: too_large from the header."""
    bomb = zstandard.ZstdCompressor(level=19).compress(b"\0" * (16 << 20))
    monkeypatch.setattr(zstandard, "ZstdDecompressor", None)  # any decompression would now raise TypeError
    for name in PATHS:
        with _path(name):
            with pytest.raises(PoisonEnvelope) as info:
                fast_decode.check_envelope(bomb, BASE, max_uncompressed=1 << 20)
            assert info.value.reason == "too_large"
            assert "states 16777216" in info.value.detail
