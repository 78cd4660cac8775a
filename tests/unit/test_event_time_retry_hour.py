"""G2 across hours: a retried event keeps its event_time, so every attempt lands in the same hourly partition.

The bug this guards: an event without event_time took each attempt's receive time. Attempt 1 received at 13:59:59.9
(durable, response lost) and the retry received at 14:00:00.3 landed in hours 13 and 14, and per-partition
deduplication committed both. Fixed twice: the SDK stamps event_time once, at creation, and a front-end fills a
missing event_time from a client-given UUIDv7 id (when inside the window) before falling back to the receive time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics as ReplicatorMetrics
from replicator.records import decode_rows
from replicator.scan import list_manifests
from replicator.store import MemoryStore
from service.client import AsyncIngestClient, ClientOptions, IngestClient, RetryPolicy
from service.client.events import fill_defaults, make_event
from service.contract import Event, PublishRequest, PublishResponse, ingest_pb2_grpc
from service.envelope import EncodedEnvelope, decode
from service.frontend.auth import Authenticator
from service.frontend.config import FrontendConfig
from service.frontend.fastpath import WireScanner
from service.frontend.metrics import Metrics
from service.frontend.packer import Packer, Ticket
from service.frontend.publisher import FakePublisher
from service.frontend.server import Frontend
from service.frontend.validate import Limits, Validator
from tests.unit.frontend_support import CATALOG

pytestmark = pytest.mark.unit

H13 = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
H13_S = int(H13.timestamp())
FIRST_S = H13_S + 3599.9  # attempt 1 received (durable, response lost)
RETRY_S = H13_S + 3600.3  # the retry received, in the next UTC hour
ID_MS = (H13_S + 3599) * 1000 + 900  # the client made the id at 13:59:59.900
LIMITS = Limits.from_config(FrontendConfig())  # 3600 s into the future, 7 days into the past
FAST_RETRY = RetryPolicy(deadline_s=5.0, initial_s=0.001, maximum_s=0.01)


def v7(unix_ms: int) -> str:
    """A canonical UUIDv7 with the given time, built by hand: ``ids.uuid7(now_ns=...)`` would move its process-wide
    monotonic floor and skew every later id of this test process."""
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return str(uuid.UUID(int=unix_ms << 80 | 0x7 << 76 | 0x123 << 64 | 0b10 << 62 | rand))


def bare(event_id: str, category: str = "ads_click") -> Event:
    """An event as a non-SDK client might send it: an id, no event_time."""
    return Event(event_id=event_id, category=category, payload=b'{"a":1}')


def check_once(e: Event, now_s: float) -> tuple[tuple[str, int], Event]:
    """One reception of ``e`` (a fresh copy, as off the wire): its (category, hour) key and the event as accepted."""
    copy = Event.FromString(e.SerializeToString())
    checked = Validator(CATALOG, LIMITS).check([copy], now_s, "c", [e.SerializeToString()])
    assert checked.accepted == 1 and not checked.rejections
    [(key, [raw])] = checked.groups.items()
    return key, Event.FromString(raw)


# --- layer 1: the SDK stamps event_time once ------------------------------------------------------------------------


def test_make_event_stamps_event_time_when_not_given() -> None:
    now_ns = int(FIRST_S * 1e9)
    e = make_event("ads_click", {"a": 1}, now_ns=now_ns)
    assert e.HasField("event_time") and e.event_time.ToNanoseconds() == now_ns
    assert uuid.UUID(e.event_id).version == 7
    given = make_event("ads_click", {"a": 1}, event_time=H13, now_ns=now_ns)
    assert given.event_time.ToDatetime(tzinfo=dt.UTC) == H13  # a caller's event_time is kept


def test_fill_defaults_stamps_a_ready_made_event_once() -> None:
    e = Event(category="ads_click", payload=b"{}")
    fill_defaults(e, now_ns=int(FIRST_S * 1e9))
    first = e.SerializeToString()
    assert e.event_id and e.event_time.ToNanoseconds() == int(FIRST_S * 1e9)
    fill_defaults(e, now_ns=int(RETRY_S * 1e9))  # a later call (a retry path) changes nothing
    assert e.SerializeToString() == first


class _Clock:
    """Stands in for the ``time`` module of ``service.client.events``: a wall clock the test moves."""

    def __init__(self, now_s: float) -> None:
        self.ns = int(now_s * 1e9)

    def time_ns(self) -> int:
        return self.ns


class _LostResponse(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "response lost"


def _flaky_publish(clock: _Clock, sent: list[bytes]) -> Callable[..., PublishResponse]:
    """Publish that records each attempt's bytes, moves the clock 0.4 s past the hour, and loses the first answer."""

    def publish(request: PublishRequest, **_: Any) -> PublishResponse:
        sent.append(request.SerializeToString())
        clock.ns = int(RETRY_S * 1e9)
        if len(sent) == 1:
            raise _LostResponse()
        return PublishResponse(accepted=len(request.events))

    return publish


def _assert_identical_attempts(sent: list[bytes]) -> None:
    assert len(sent) == 2 and sent[0] == sent[1]  # the retry resends the very same events
    events = PublishRequest.FromString(sent[0]).events
    assert len(events) == 2
    for e in events:
        assert e.event_time.ToNanoseconds() == int(FIRST_S * 1e9)  # stamped once, before the first attempt
        assert e.event_time.seconds // 3600 == H13_S // 3600


def test_sync_client_retry_resends_the_same_event_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock(FIRST_S)
    monkeypatch.setattr("service.client.events.time", clock)
    sent: list[bytes] = []
    stub = SimpleNamespace(Publish=_flaky_publish(clock, sent))
    options = ClientOptions(max_latency_s=0.01, retry=FAST_RETRY)
    with IngestClient(["a:1", "b:1"], options=options) as client:
        monkeypatch.setattr(client, "_stub", lambda _index: stub)
        client.send("ads_click", {"a": 1})
        client.send_event(Event(event_id=v7(ID_MS), category="ads_click", payload=b"{}"))  # ready-made, no time
        result = client.flush(timeout=10)
    assert result.accepted == 2 and result.ok
    _assert_identical_attempts(sent)


def test_async_client_retry_resends_the_same_event_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock(FIRST_S)
    monkeypatch.setattr("service.client.events.time", clock)
    sent: list[bytes] = []
    publish = _flaky_publish(clock, sent)

    async def async_publish(request: PublishRequest, **kw: Any) -> PublishResponse:
        return publish(request, **kw)

    stub = SimpleNamespace(Publish=async_publish)

    async def go() -> int:
        options = ClientOptions(max_latency_s=0.01, retry=FAST_RETRY)
        async with AsyncIngestClient(["a:1", "b:1"], options=options) as client:
            monkeypatch.setattr(client, "_stub", lambda _index: stub)
            await client.send("ads_click", {"a": 1})
            await client.send_event(Event(event_id=v7(ID_MS), category="ads_click", payload=b"{}"))
            return (await client.flush(timeout=10)).accepted

    assert asyncio.run(go()) == 2
    _assert_identical_attempts(sent)


# --- layer 2: the front-end fills a missing event_time from a UUIDv7 id ------------------------------------------


def test_missing_event_time_comes_from_the_uuid7_id() -> None:
    key, accepted = check_once(bare(v7(ID_MS)), RETRY_S)  # received at 14:00:00.300
    assert key == ("ads_click", H13_S // 3600)  # hour 13, where the id was made
    assert (accepted.event_time.seconds, accepted.event_time.nanos) == (H13_S + 3599, 900_000_000)


@pytest.mark.parametrize(
    ("name", "make_id"),
    [
        ("uuid4", lambda: str(uuid.uuid4())),
        ("v7 layout but version 4", lambda: v7(ID_MS)[:14] + "4" + v7(ID_MS)[15:]),
        ("v7 layout but variant 0b11", lambda: v7(ID_MS)[:19] + "c" + v7(ID_MS)[20:]),
        ("v7 older than the window", lambda: v7(int((RETRY_S - LIMITS.event_time_past_s - 1) * 1000))),
        ("v7 newer than the window", lambda: v7(int((RETRY_S + LIMITS.event_time_future_s + 1) * 1000))),
        ("v7 at the epoch", lambda: v7(0)),
    ],
)
def test_falls_back_to_receive_time(name: str, make_id: Callable[[], str]) -> None:
    key, accepted = check_once(bare(make_id()), RETRY_S)
    assert key == ("ads_click", int(RETRY_S) // 3600)
    assert accepted.event_time.ToNanoseconds() == int(RETRY_S * 1e9)


def test_window_edges_for_the_id_time_are_inclusive() -> None:
    now = float(H13_S + 1800)
    for edge_s in (now - LIMITS.event_time_past_s, now + LIMITS.event_time_future_s):
        _, accepted = check_once(bare(v7(int(edge_s) * 1000)), now)
        assert accepted.event_time.seconds == int(edge_s)


def test_a_given_event_time_wins_over_the_id_time() -> None:
    e = bare(v7(ID_MS))
    e.event_time.FromSeconds(H13_S + 60)
    key, accepted = check_once(e, RETRY_S)
    assert accepted.event_time.seconds == H13_S + 60 and key == ("ads_click", H13_S // 3600)


def test_the_c_scan_leaves_events_without_event_time_to_python() -> None:
    """The C fast path accepts only events that carry event_time, so the id rule needs no C twin."""
    if not WireScanner.available():
        pytest.skip("C scanner not built")
    raw = PublishRequest(events=[bare(v7(ID_MS))]).SerializeToString()
    assert WireScanner(CATALOG, LIMITS, 1000).scan(raw, RETRY_S, "c") is None


# --- both layers' point: two receptions of one id land in one (category, hour) and commit once -------------------


def test_two_receptions_across_the_hour_share_one_packer_key() -> None:
    eid = v7(ID_MS)
    out: list[EncodedEnvelope] = []

    def submit(enc: EncodedEnvelope, done: Callable[[BaseException | None], None]) -> None:
        out.append(enc)
        done(None)

    keys = []
    for now_s in (FIRST_S, RETRY_S):
        e = bare(eid)
        checked = Validator(CATALOG, LIMITS).check([e], now_s, "c", [e.SerializeToString()])
        keys.append(next(iter(checked.groups)))
        packer = Packer(submit, Metrics(), instance_id="fe", target_bytes=1 << 20, max_latency_s=60, zstd_level=1)
        ticket = Ticket()
        packer.add(checked.groups, ticket, checked.stamp, checked.times)
        packer.flush_all()
        assert ticket.wait(1) and ticket.error is None
    assert keys == [("ads_click", H13_S // 3600)] * 2
    assert [enc.attributes["min_event_time"][:13] for enc in out] == ["2026-11-26T13"] * 2


def _frontend(tmp: Path, now_s: float, publisher: FakePublisher) -> Frontend:
    config = FrontendConfig(port=0, spool_dir=tmp, envelope_max_latency_ms=5.0)
    return Frontend(config, CATALOG, publisher, Authenticator(None), clock=lambda: now_s)


def test_retry_to_another_front_end_across_the_hour_commits_once(tmp_path: Path) -> None:
    """A non-SDK client: UUIDv7 id, no event_time. Front-end A receives at 13:59:59.9, B the retry at 14:00:00.3."""
    request = PublishRequest(events=[bare(v7(ID_MS))])
    publisher = FakePublisher()
    for name, now_s in (("a", FIRST_S), ("b", RETRY_S)):
        fe = _frontend(tmp_path / name, now_s, publisher)
        port = fe.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            assert ingest_pb2_grpc.IngestStub(channel).Publish(request, timeout=10).accepted == 1
        finally:
            channel.close()
            fe.shutdown(grace_s=2.0)
    envelopes = [enc for _, enc in publisher.published]
    assert [decode(enc.data, enc.attributes).events[0].event_time.seconds for enc in envelopes] == [H13_S + 3599] * 2

    store, metrics = MemoryStore(), ReplicatorMetrics()
    lander = Lander(store, [c.name for c in CATALOG.categories], metrics)
    for enc in envelopes:
        lander.land(enc.data, enc.attributes)
    finalizer = Finalizer(store, CATALOG, metrics, FinalizeSettings(writer="t"))
    for hours in (0, 1):
        finalizer.finalize_partition(Partition("ads_click", H13 + dt.timedelta(hours=hours)))
    committed = [
        row["event_id"]
        for _, manifest in list_manifests(store, ["ads_click"])
        for f in manifest.files
        for row in decode_rows(store.read(f.name), CATALOG.category("ads_click"))
    ]
    assert committed == [request.events[0].event_id]
