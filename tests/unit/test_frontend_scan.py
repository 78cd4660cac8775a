"""The C fast path (``service.frontend._scan``) against the Python reference: it may only accept what the Python bulk
path accepts, with the same bytes; it never crashes on any bytes; a normal request takes it."""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.client.ids import uuid7_str
from service.contract import Event, PublishRequest, StatusCode
from service.envelope import EncodedEnvelope, decode
from service.frontend.config import FrontendConfig
from service.frontend.fastpath import Scanned, WireScanner
from service.frontend.metrics import Metrics
from service.frontend.packer import Packer, Ticket
from service.frontend.validate import Checked, Limits, Validator
from service.frontend.wire import FramedGroup, framed_group
from service.jsonlimits import too_deep
from tests.unit.frontend_support import CATALOG, event, published_event_ids, request, running_frontend
from tests.unit.frontend_support import until as _until

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.25
LIMITS = Limits.from_config(FrontendConfig(max_payload_bytes=3000, max_producer_chars=12))
MAX_EVENTS = 50
SCANNER = WireScanner(CATALOG, LIMITS, MAX_EVENTS)
_MSGSPEC = msgspec.json.Decoder(msgspec.Raw)


def test_the_extension_is_built() -> None:
    """CI notices a missing build: without it every request silently takes the slower Python path."""
    from service.frontend import _scan

    assert WireScanner.available() and callable(_scan.scan)


# --- JSON: the C check may only accept what UTF-8 decoding + msgspec accept -----------------------------------------


def _python_json_ok(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
        _MSGSPEC.decode(payload)
    except (UnicodeDecodeError, msgspec.DecodeError, RecursionError):
        return False
    return not too_deep(payload)  # BigQuery's JSON limit: the C scan and the Python path both enforce it


def _c_json_ok(payload: bytes) -> bool:
    from service.frontend._scan import json_ok

    return json_ok(payload)


EDGES = [
    b"", b" ", b"{}", b"[]", b'""', b"0", b"-0", b"-0.0e-0", b"1E5", b"2.5e-3", b"1e400", b"1" * 5000, b" 1 ",
    b"\t1\r\n", b"01", b"-01", b"1.", b".5", b"-", b"1e", b"1e+", b"+1", b"NaN", b"Infinity", b"-Infinity", b"1 2",
    b"1\x00", b"\x0b1", b"\x0c1", b"\xef\xbb\xbf1", b"[1,]", b'{"a":1,}', b"[1 2]", b'{"a"}', b"{1:2}", b'{"a" : 1}',
    b"tru", b"nulll", b"true", b"false", b"null", b'"abc', b'"\\/"', b'"\\x"', b'"\\U0041"', b'"\\u00zz"',
    b'"\\ud800"', b'"\\udc00"', b'"\\ud800\\udc00"', b'"\\ud800\\u0041"', b'"\\ud800\\udbff"', b'"\\uDBFF\\uDFFF"',
    b'"\x01"', b'"\x1f"', b'"\x7f"', b'"\xff"', b'"\xc0\x80"', b'"\xc1\xbf"', b'"\xe0\x80\x80"', b'"\xed\xa0\x80"',
    b'"\xf0\x80\x80\x80"', b'"\xf4\x90\x80\x80"', b'"\xf0\x9f\x98\x80"', b'"\xc3"', b'"\xe2\x82"', b"\xc3\xa9",
    b"[" * 500 + b"]" * 500, b"[" * 501 + b"]" * 501, b"[" * 500 + b"{}" + b"]" * 500, b"[" * 499 + b"{}" + b"]" * 499,
    b"[" * 512 + b"]" * 512, b"[" * 513 + b"]" * 513, b"[" * 999 + b"]" * 999, b"[" * 1000 + b"]" * 1000,
    b'{"a":' * 400 + b"1" + b"}" * 400, b'{"a":[1,{"b":null}],"c":"d\\n\\t\\"\\\\"}', b"[1,2,]", b'{"a":1 "b":2}',
    b'"' + b"a" * 100 + b'\\"' + b"b" * 7 + b'"', b'"' + b"x" * 31 + b"\xe2\x82\xac" + b"y" * 40 + b'"',
]  # fmt: skip


@pytest.mark.parametrize("payload", EDGES, ids=range(len(EDGES)))
def test_json_edge_cases_agree_with_msgspec(payload: bytes) -> None:
    expected = _python_json_ok(payload)
    assert _c_json_ok(payload) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(value=json_values, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 1, "\t"]))
def test_well_formed_json_is_accepted_like_msgspec(value: Any, ensure_ascii: bool, indent: Any) -> None:
    payload = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode()
    assert _c_json_ok(payload) and _python_json_ok(payload)


TOKENS = [
    b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"u", b"d800", b"dc00", b"0", b"1", b"-", b"+", b".", b"e", b"E",
    b" ", b"\n", b"\x0b", b"true", b"nul", b'"a"', b"\xc3\xa9", b"\xff", b"\xed\xa0\x80", b"\x00", b"\x1f", b'"k":',
    b'\\"', b"\\n", b"\\u0041", b"\\ud83d\\ude00", b"\xf0\x9f\x98", b"\x80", b"NaN", b"a" * 17,
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(
    st.one_of(
        st.lists(st.sampled_from(TOKENS), max_size=14).map(b"".join),
        st.binary(max_size=64),
        st.tuples(json_values, st.integers(0, 200), st.sampled_from(TOKENS)).map(
            lambda t: _splice(json.dumps(t[0]).encode(), t[1], t[2])
        ),
    )
)
def test_hostile_json_is_never_accepted_when_msgspec_refuses(payload: bytes) -> None:
    assert _c_json_ok(payload) == _python_json_ok(payload)


def _splice(doc: bytes, at: int, token: bytes) -> bytes:
    at = at % (len(doc) + 1)
    return doc[:at] + token + doc[at:]


# --- whole requests: C verdict vs the Python bulk path ---------------------------------------------------------------


def _python_verdict(raw: bytes) -> Checked | None:
    """What the Python path decides about the same bytes: the bulk result, or None (rejections, changes, no parse)."""
    try:
        request = PublishRequest.FromString(raw)
    except Exception:
        return None
    events = list(request.events)
    if not events or len(events) > MAX_EVENTS:
        return None
    from service.contract import ingest_pb2

    raws = list(ingest_pb2.PublishRequestEventsView.FromString(raw).events)
    lim = LIMITS
    out = Checked(stamp=SCANNER_STAMP)
    ok = Validator(CATALOG, lim)._all_good(
        events, raws, NOW - lim.event_time_past_s, NOW + lim.event_time_future_s, out
    )
    return out if ok else None


def _stamp() -> bytes:
    return Validator(CATALOG, LIMITS).check([], NOW, "client-9").stamp


SCANNER_STAMP = _stamp()


def _assert_same(scanned: Scanned, checked: Checked, raw: bytes) -> None:
    request = PublishRequest.FromString(raw)
    assert scanned.sequence == request.sequence
    assert scanned.omit_accepted_statuses == request.omit_accepted_statuses
    assert scanned.accepted == checked.accepted and scanned.accepted_bytes == checked.accepted_bytes
    expected = [
        framed_group(cat, hour, events, checked.stamp, checked.times[(cat, hour)])
        for (cat, hour), events in checked.groups.items()
    ]
    assert [_fields(g) for g in scanned.groups] == [_fields(g) for g in expected]


def _fields(g: FramedGroup) -> tuple[object, ...]:
    return g.category, g.hour, g.count, g.data, list(g.ends), list(g.times), g.min_time, g.max_time


def _check(raw: bytes, *, must_agree: bool) -> None:
    scanned = SCANNER.scan(raw, NOW, "client-9")
    checked = _python_verdict(raw)
    if scanned is not None:
        assert checked is not None, "C accepted what Python does not"
        _assert_same(scanned, checked, raw)
    elif must_agree:
        assert checked is None, "C refused a plain request the Python bulk path accepts"


GOOD_JSON = [b"{}", b'{"a":1}', b"[1,2]", b'"s"', b"1", b"null", '{"é":"ü"}'.encode(), b' {"x": [true, 2.5e3]} ']


# Deep nesting stays out: C says "not sure" past 512 levels, and where msgspec stops (~1000 levels) depends on the
# Python stack depth of the caller.
SHALLOW_EDGES = [e for e in EDGES if not e.startswith(b"[" * 600)]
BAD_FIELDS = ["id", "category", "payload", "time", "nanos", "unset time", "attributes", "producer"]


@st.composite
def plain_events(draw: Any) -> Event:
    """Events as the SDK serializes them: good ones, or one field given a bad or edge value (most are good)."""
    bad = draw(st.sampled_from([None] * 16 + BAD_FIELDS))
    eid = draw(st.one_of(st.uuids().map(str), st.builds(uuid7_str)))
    if bad == "id":
        eid = draw(st.sampled_from(["", "not-a-uuid", eid.upper(), "{" + eid + "}", eid[:-1] + "g", eid + " "]))
    category = draw(st.sampled_from(["app_log", "ads_click", "trace_span", "login_event"]))
    if bad == "category":
        category = draw(st.sampled_from(["", "nope", "app_lo", "app_logs", "App_log"]))
    payload = draw(st.one_of(st.sampled_from(GOOD_JSON), json_values.map(lambda v: json.dumps(v).encode())))
    if bad == "payload":
        payload = draw(
            st.one_of(
                st.sampled_from([b"", b"{", b"NaN", b'{"a":1}x', b"\xff\xfe", b"[" * 20 + b"]" * 19, b"x" * 3001]),
                st.sampled_from(SHALLOW_EDGES),
                st.binary(max_size=40),
            )
        )
    producer = draw(st.text(max_size=12 if bad != "producer" else 20))
    e = Event(event_id=eid, category=category, payload=payload, producer=producer)
    secs, nanos = draw(st.integers(int(NOW) - 7 * 86400, int(NOW) + 3600)), draw(st.integers(0, 999_999_999))
    if bad == "time":
        secs = draw(st.sampled_from([1, int(NOW) - 7 * 86400 - 1, int(NOW) + 3601, -5, 2**40, 10**10]))
    elif bad == "nanos":
        nanos = draw(st.sampled_from([-1, 1_000_000_000, 2**31 - 1, -(2**31)]))
    if bad != "unset time":
        e.event_time.seconds, e.event_time.nanos = secs, nanos
    elif draw(st.booleans()):
        e.event_time.SetInParent()  # present but zero
    if bad == "attributes":
        e.attributes["k"] = "v"
    return e


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch=st.lists(plain_events(), min_size=1, max_size=8),
    dup=st.booleans(),
    sequence=st.integers(0, 2**64 - 1),
    omit=st.booleans(),
)
def test_c_verdict_equals_python_verdict(batch: list[Event], dup: bool, sequence: int, omit: bool) -> None:
    if dup and len(batch) > 1:
        batch[-1].event_id = batch[0].event_id
    raw = PublishRequest(events=batch, sequence=sequence, omit_accepted_statuses=omit).SerializeToString()
    _check(raw, must_agree=True)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 2**32), hours=st.integers(1, 3), size=st.sampled_from([20, 1024]))
def test_good_requests_are_accepted_with_the_same_groups(n: int, seed: int, hours: int, size: int) -> None:
    rnd = random.Random(seed)
    events = []
    for i in range(n):
        payload = json.dumps({"i": i, "msg": "é" * rnd.randint(0, 3) + "x" * rnd.randint(0, size)}).encode()
        category = rnd.choice(["app_log", "ads_click", "trace_span"])
        e = Event(event_id=uuid7_str(), category=category, payload=payload, producer="p" * rnd.randint(0, 12))
        e.event_time.seconds = int(NOW) - 3600 * rnd.randrange(hours) - rnd.randrange(3600)
        e.event_time.nanos = rnd.randrange(1_000_000_000)
        events.append(e)
    raw = PublishRequest(events=events, sequence=seed, omit_accepted_statuses=True).SerializeToString()
    scanned = SCANNER.scan(raw, NOW, "client-9")
    checked = _python_verdict(raw)
    assert scanned is not None and checked is not None
    _assert_same(scanned, checked, raw)


def _good_raw(n: int = 5, payload: bytes = b'{"a":1}') -> bytes:
    events = [Event(event_id=uuid7_str(), category="app_log", payload=payload) for _ in range(n)]
    for e in events:
        e.event_time.seconds = int(NOW)
    return PublishRequest(events=events, sequence=7).SerializeToString()


ODD_WIRE = {
    "unknown request field": _good_raw() + b"\x20\x01",
    "omit = 2": _good_raw() + b"\x18\x02",
    "non-minimal varint": _good_raw() + b"\x10\x81\x00",
    "client-set ingest_time": PublishRequest(
        events=[Event(event_id=str(uuid.uuid4()), category="app_log", payload=b"1",
                      event_time={"seconds": int(NOW)}, ingest_time={"seconds": 5})]
    ).SerializeToString(),
    "client-set client_id": PublishRequest(
        events=[Event(event_id=str(uuid.uuid4()), category="app_log", payload=b"1",
                      event_time={"seconds": int(NOW)}, client_id="x")]
    ).SerializeToString(),
    "negative seconds": PublishRequest(
        events=[Event(event_id=str(uuid.uuid4()), category="app_log", payload=b"1", event_time={"seconds": -1})]
    ).SerializeToString(),
    "too many events": _good_raw(MAX_EVENTS + 1),
    "no events": PublishRequest(sequence=3).SerializeToString(),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ODD_WIRE))
def test_wire_it_does_not_understand_is_left_to_python(name: str) -> None:
    assert SCANNER.scan(ODD_WIRE[name], NOW, "client-9") is None


def test_a_repeated_sequence_or_omit_flag_counts_once_the_last_wins() -> None:
    """The load generator appends a sequence to pre-serialized requests; any parser keeps the last value."""
    raw = _good_raw() + b"\x10\x81\x01" + b"\x18\x01" + b"\x10\x05"
    scanned = SCANNER.scan(raw, NOW, "client-9")
    checked = _python_verdict(raw)
    assert scanned is not None and checked is not None
    _assert_same(scanned, checked, raw)
    assert (scanned.sequence, scanned.omit_accepted_statuses) == (5, True)


def test_a_field_repeated_inside_an_event_is_left_to_python() -> None:
    e = Event(event_id=str(uuid.uuid4()), category="app_log", payload=b"1", event_time={"seconds": int(NOW)})
    body = e.SerializeToString() + b"\x22\x01\x32"  # payload again (a parser keeps the last one)
    raw = b"\x0a" + bytes([len(body)]) + body
    assert PublishRequest.FromString(raw).events[0].payload == b"2"
    assert SCANNER.scan(raw, NOW, "client-9") is None
    assert SCANNER.scan(b"\x0a" + bytes([len(body) - 3]) + body[:-3], NOW, "client-9") is not None


@settings(max_examples=1500, deadline=None)
@given(
    base=st.integers(1, 6),
    cuts=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["flip", "cut", "insert"]))),
)
def test_mangled_requests_never_crash_and_never_fool_it(base: int, cuts: list[tuple[int, int, str]]) -> None:
    raw = bytearray(_good_raw(base, payload=b'{"k":"\xc3\xa9","n":[1,2]}'))
    for at, byte, how in cuts:
        at %= len(raw) + 1
        if how == "flip" and at < len(raw):
            raw[at] ^= byte or 1
        elif how == "cut":
            del raw[at:]
        else:
            raw[at:at] = bytes([byte])
        if not raw:
            break
    _check(bytes(raw), must_agree=False)


@settings(max_examples=500, deadline=None)
@given(blob=st.binary(max_size=600))
def test_random_bytes_never_crash_and_never_fool_it(blob: bytes) -> None:
    _check(blob, must_agree=False)
    _check(b"\x0a" + bytes([min(len(blob), 127)]) + blob, must_agree=False)


def test_big_requests_scan_without_the_gil_in_parallel() -> None:
    """Requests past the GIL-release size, from several threads at once: each gets its own, correct answer."""
    raws = [_good_raw(40, payload=json.dumps({"i": i, "m": "x" * 1900}).encode()) for i in range(6)]
    expected = [_python_verdict(r) for r in raws]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(20):
                scanned = SCANNER.scan(raws[k], NOW, "client-9")
                checked = expected[k]
                assert scanned is not None and checked is not None
                _assert_same(scanned, checked, raws[k])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(raws))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(raws[0]) > 65536


# --- the packer: a scanned group splits into the same envelopes as the Python path --------------------------------


def test_split_scanned_groups_make_the_same_envelopes_as_the_python_path() -> None:
    rnd = random.Random(4)
    events = []
    for i in range(45):
        payload = json.dumps({"i": i, "p": "x" * rnd.randrange(300)}).encode()
        e = Event(event_id=uuid7_str(), category="app_log", payload=payload)
        e.event_time.seconds, e.event_time.nanos = int(NOW) - rnd.randrange(3000), rnd.randrange(10**9)
        events.append(e)
    raw = PublishRequest(events=events).SerializeToString()
    scanned = SCANNER.scan(raw, NOW, "client-9")
    checked = _python_verdict(raw)
    assert scanned is not None and checked is not None
    envelopes: dict[str, list[tuple[bytes, dict[str, str]]]] = {"c": [], "py": []}
    for name in envelopes:
        out = envelopes[name]

        def submit(enc: EncodedEnvelope, done: Callable[[BaseException | None], None], out: Any = out) -> None:
            out.append((enc.data, enc.attributes))
            done(None)

        packer = Packer(submit, Metrics(), instance_id="fe", target_bytes=2500, max_latency_s=60, zstd_level=1)
        ticket = Ticket()
        if name == "c":
            packer.add_framed(scanned.groups, ticket)
        else:
            packer.add(checked.groups, ticket, checked.stamp, checked.times)
        packer.flush_all()
        assert ticket.wait(1) and ticket.error is None

    def shape(items: list[tuple[bytes, dict[str, str]]]) -> list[tuple[object, ...]]:
        keep = ("event_count", "min_event_time", "max_event_time", "uncompressed_bytes")
        return [([e.SerializeToString() for e in decode(d, a).events], {k: a[k] for k in keep}) for d, a in items]

    assert len(envelopes["c"]) > 3
    assert shape(envelopes["c"]) == shape(envelopes["py"])


# --- the server takes the fast path for plain requests and the Python path for the rest --------------------------


def test_the_server_takes_the_fast_path_only_when_it_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    reference = Validator.check

    def counting(self: Validator, events: Any, *args: Any) -> Checked:
        calls.append(len(events))
        return reference(self, events, *args)

    monkeypatch.setattr(Validator, "check", counting)
    with running_frontend(tmp_path) as (_fe, stub, pub):
        good = [event() for _ in range(3)]
        resp = stub.Publish(request(*good, sequence=11), timeout=10)
        assert (resp.sequence, resp.accepted, resp.rejected) == (11, 3, 0)
        assert [s.event_id for s in resp.statuses] == [e.event_id for e in good]  # statuses listed: parsed lazily
        assert calls == []
        bad = event(payload=b"{")
        resp = stub.Publish(request(event(), bad), timeout=10)
        assert (resp.accepted, resp.rejected) == (1, 1) and calls == [2]
        assert [(s.index, s.code) for s in resp.statuses if s.code != StatusCode.ACCEPTED] == [
            (1, StatusCode.INVALID_JSON)
        ]
        assert _until(lambda: len(published_event_ids(pub)) == 4)
        assert set(published_event_ids(pub)) >= {e.event_id for e in good}
