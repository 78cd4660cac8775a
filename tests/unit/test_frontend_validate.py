"""The validator, one bad input at a time: each gets its own code, and good neighbours are still accepted."""

from __future__ import annotations

import uuid

import pytest

from service.contract import Event, StatusCode
from service.frontend.config import FrontendConfig
from service.frontend.validate import Limits, Validator, json_problem
from tests.unit.frontend_support import CATALOG, event

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
LIMITS = Limits.from_config(FrontendConfig(max_payload_bytes=1000, max_attributes=2, max_attributes_bytes=40))


def _padded() -> Event:
    """A valid event carrying an unknown field (number 15) of 20,000 bytes: over LIMITS.max_event_bytes (18,448)."""
    pad = b"x" * 20_000
    return Event.FromString(event().SerializeToString() + b"\x7a" + bytes([0xA0, 0x9C, 0x01]) + pad)


def _at(offset_s: float, **kw: object) -> Event:
    e = event(**kw)  # type: ignore[arg-type]
    e.event_time.FromNanoseconds(int((NOW + offset_s) * 1e9))
    return e


BAD = [
    ("unknown category", lambda: event(category="no_such_cat"), StatusCode.UNKNOWN_CATEGORY),
    ("payload too large", lambda: event(category="trace_span", payload=b"x" * 1001), StatusCode.PAYLOAD_TOO_LARGE),
    ("too far in future", lambda: _at(3601), StatusCode.EVENT_TIME_OUT_OF_WINDOW),
    ("too old", lambda: _at(-7 * 86400 - 1), StatusCode.EVENT_TIME_OUT_OF_WINDOW),
    ("bad nanos", lambda: Event(event_id=str(uuid.uuid4()), category="app_log", payload=b"{}",
                                event_time={"seconds": int(NOW), "nanos": -1}), StatusCode.EVENT_TIME_OUT_OF_WINDOW),
    ("id not a uuid", lambda: event(event_id="not-a-uuid"), StatusCode.INVALID_EVENT_ID),
    ("id uppercase", lambda: event(event_id=str(uuid.uuid4()).upper()), StatusCode.INVALID_EVENT_ID),
    ("id braces", lambda: event(event_id="{" + str(uuid.uuid4()) + "}"), StatusCode.INVALID_EVENT_ID),
    ("too many attributes", lambda: event(attributes={"a": "1", "b": "2", "c": "3"}), StatusCode.TOO_MANY_ATTRIBUTES),
    ("attributes too large", lambda: event(attributes={"a": "x" * 40}), StatusCode.ATTRIBUTES_TOO_LARGE),
    ("truncated json", lambda: event(payload=b'{"a": 1'), StatusCode.INVALID_JSON),
    ("trailing garbage", lambda: event(payload=b'{"a": 1} x'), StatusCode.INVALID_JSON),
    ("not utf-8", lambda: event(payload=b'{"a": "\xff"}'), StatusCode.INVALID_JSON),
    ("NaN", lambda: event(payload=b"NaN"), StatusCode.INVALID_JSON),
    ("empty json", lambda: event(payload=b""), StatusCode.INVALID_JSON),
    ("producer too long", lambda: event(producer="p" * 257), StatusCode.INVALID_PRODUCER),
    ("padded with unknown fields", _padded, StatusCode.PAYLOAD_TOO_LARGE),
]  # fmt: skip


def _now_event() -> Event:
    return _at(0)


@pytest.mark.parametrize(("name", "make", "code"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_event_gets_its_code_and_neighbours_survive(name: str, make: object, code: int) -> None:
    good1, bad, good2 = _now_event(), make(), _now_event()  # type: ignore[operator]
    if bad.HasField("event_time") and name not in ("too far in future", "too old", "bad nanos"):
        bad.event_time.FromNanoseconds(int(NOW * 1e9))
    checked = Validator(CATALOG, LIMITS).check([good1, bad, good2], NOW, "c1")
    assert [(r.index, r.code) for r in checked.rejections] == [(1, code)]
    assert checked.rejections[0].message  # a precise reason, never empty
    assert checked.accepted == 2
    accepted = [Event.FromString(b).event_id for evs in checked.groups.values() for b in evs]
    assert accepted == [good1.event_id, good2.event_id]


def test_duplicate_id_in_batch_rejects_the_second_only() -> None:
    a = _now_event()
    b = _now_event()
    b.event_id = a.event_id
    checked = Validator(CATALOG, LIMITS).check([a, b], NOW, "c1")
    assert [(r.index, r.code) for r in checked.rejections] == [(1, StatusCode.DUPLICATE_EVENT_ID)]


def test_fills_missing_event_time_and_id_and_stamps_ingest_time_and_client() -> None:
    e = Event(category="app_log", payload=b"{}", client_id="forged")
    checked = Validator(CATALOG, LIMITS).check([e], NOW, "client-7")
    assert checked.accepted == 1 and not checked.rejections
    assert e.event_time.seconds == int(NOW)
    assert uuid.UUID(e.event_id).version == 7
    assert checked.assigned_ids == {0: e.event_id}
    [[packed]] = checked.groups.values()
    stamped = Event.FromString(packed + checked.stamp)
    assert stamped.event_id == e.event_id and stamped.event_time.seconds == int(NOW)
    assert stamped.client_id == "client-7" and stamped.ingest_time.seconds == int(NOW)


def test_groups_by_category_and_utc_hour() -> None:
    base = NOW - NOW % 3600
    events = [_at(base - NOW + 10), _at(base - NOW - 10), _at(base - NOW + 20, category="ads_click")]
    checked = Validator(CATALOG, LIMITS).check(events, NOW, "c")
    hour = int(base) // 3600
    assert {k: len(v) for k, v in checked.groups.items()} == {
        ("app_log", hour): 1,
        ("app_log", hour - 1): 1,
        ("ads_click", hour): 1,
    }


def test_unchanged_events_are_kept_as_the_bytes_that_arrived() -> None:
    e = _now_event()
    raw = e.SerializeToString() + b""  # any bytes that parse to the same event
    checked = Validator(CATALOG, LIMITS).check([e], NOW, "c", [raw])
    [[kept]] = checked.groups.values()
    assert kept is raw


def test_bytes_category_skips_json_check() -> None:
    checked = Validator(CATALOG, LIMITS).check([_at(0, category="trace_span", payload=b"\x00\xff")], NOW, "c")
    assert checked.accepted == 1


@pytest.mark.parametrize("good", [b"{}", b"[]", b'"s"', b"1", b"null", b' {"a": [1, 2.5, {"b": true}]} '])
def test_json_problem_accepts_well_formed(good: bytes) -> None:
    assert json_problem(good) is None


def test_window_edges_are_inclusive() -> None:
    checked = Validator(CATALOG, LIMITS).check([_at(3600), _at(-7 * 86400)], NOW, "c")
    assert checked.accepted == 2


def _outcome(checked: object) -> tuple[object, ...]:
    from service.frontend.validate import Checked

    assert isinstance(checked, Checked)
    groups = {k: [Event.FromString(b) for b in v] for k, v in checked.groups.items()}
    return groups, checked.times, checked.rejections, checked.accepted, checked.accepted_bytes


@pytest.mark.parametrize(("name", "make", "code"), [*BAD, ("good", _now_event, StatusCode.ACCEPTED)])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_bulk_fast_path_agrees_with_the_per_event_loop(name: str, make: object, code: int, position: int) -> None:
    """With raw bytes (the server's case) the bulk path may answer; it must answer exactly as the loop does."""
    events = [_at(-3600 * (i % 2), category=("app_log", "trace_span")[i % 2]) for i in range(3)]
    bad = make()  # type: ignore[operator]
    if bad.HasField("event_time") and name not in ("too far in future", "too old", "bad nanos"):
        bad.event_time.FromNanoseconds(int(NOW * 1e9))
    events[position] = bad
    if name == "good":
        events.append(_at(0, payload='{"é": "ü"}'.encode(), producer="p" * 256))
    raws = [e.SerializeToString() for e in events]
    fast = Validator(CATALOG, LIMITS).check([Event.FromString(r) for r in raws], NOW, "c", raws)
    slow = Validator(CATALOG, LIMITS).check([Event.FromString(r) for r in raws], NOW, "c", None)
    assert _outcome(fast) == _outcome(slow)
    assert fast.groups == {k: [r for r in raws if Event.FromString(r) in v] for k, v in _outcome(slow)[0].items()}  # type: ignore[index, union-attr]
    if code == StatusCode.ACCEPTED:
        assert not fast.rejections and fast.accepted == 4
        from service.frontend.validate import Checked

        parsed = [Event.FromString(r) for r in raws]
        assert Validator(CATALOG, LIMITS)._all_good(parsed, raws, NOW - 7 * 86400, NOW + 3600, Checked())  # bulk path
        assert len(fast.groups) == len({(e.category, e.event_time.seconds // 3600) for e in events})
        assert len(fast.groups) == (1 if position == 1 else 2)
    else:
        assert [r.code for r in fast.rejections] == [code] or name == "bad nanos"


def test_bulk_fast_path_rejects_duplicates_and_empty_ids_like_the_loop() -> None:
    a, b = _now_event(), _now_event()
    b.event_id = a.event_id
    c = _now_event()
    c.event_id = ""
    for events in ([a, b], [a, c]):
        raws = [e.SerializeToString() for e in events]
        fast = Validator(CATALOG, LIMITS).check([Event.FromString(r) for r in raws], NOW, "c", raws)
        assert fast.accepted == 1 + (events[1] is c)
        if events[1] is b:
            assert [r.code for r in fast.rejections] == [StatusCode.DUPLICATE_EVENT_ID]
        else:
            assert fast.assigned_ids and not fast.rejections


@pytest.mark.parametrize("with_raw", [True, False])
def test_deeply_nested_json_is_rejected_alone(with_raw: bool) -> None:
    """msgspec raises RecursionError (not DecodeError) ~1000 levels deep: still one INVALID_JSON, neighbours kept."""
    good1, bad, good2 = _now_event(), _now_event(), _now_event()
    bad.payload = b"[" * 5000 + b"]" * 5000
    raws = [e.SerializeToString() for e in (good1, bad, good2)]
    checked = Validator(CATALOG, Limits.from_config(FrontendConfig())).check(
        [Event.FromString(r) for r in raws], NOW, "c", raws if with_raw else None
    )
    assert checked.accepted == 2
    assert [(r.index, r.code) for r in checked.rejections] == [(1, StatusCode.INVALID_JSON)]
    assert "nested too deeply" in checked.rejections[0].message
