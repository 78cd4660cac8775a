"""An envelope the finalizer could not convert or name is dead-lettered at landing with its reason (G1, G3, G5).

Before, such an envelope (an event time past year 9999, a non-UTF-8 payload in a json category, an envelope id that
is no object name) landed and was acked, and then its partition failed at every finalizer pass. Now the message
handler dead-letters it with a precise reason, and a good envelope of the same hour lands and is committed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import zstandard

from replicator import records
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.handler import MessageHandler
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.store import MemoryStore
from replicator.synth import make_envelope
from service.catalog import load_catalog
from service.contract import Envelope
from tests.unit.replicator_support import FakeDeadLetter, FakeMessage

pytestmark = pytest.mark.unit
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
CAT = load_catalog()


def _tampered(category: str, mutate: Callable[[Envelope], None], envelope_id: str = "bad-1") -> FakeMessage:
    """A third party's envelope: honest-looking attributes of ``make_envelope`` (hour H, so landing takes its fast
    path and does not parse the events), with one thing changed inside the body."""
    enc = make_envelope(category, ["b1", "b2"], H + dt.timedelta(minutes=5), envelope_id="bad-1")
    env = Envelope.FromString(zstandard.ZstdDecompressor().decompress(enc.data))
    mutate(env)
    raw = env.SerializeToString()
    attrs = {**enc.attributes, "uncompressed_bytes": str(len(raw)), "envelope_id": env.envelope_id}
    return FakeMessage(zstandard.ZstdCompressor().compress(raw), attrs, message_id=f"poison-{envelope_id[:8]}")


def _set_time(field_name: str, seconds: int, nanos: int = 0) -> Callable[[Envelope], None]:
    def mutate(env: Envelope) -> None:
        ts = getattr(env.events[1], field_name)
        ts.seconds, ts.nanos = seconds, nanos

    return mutate


POISON: dict[str, tuple[str, Callable[[Envelope], None], str]] = {
    "event_time_1e12": ("ads_click", _set_time("event_time", 10**12), "event_time_out_of_range"),
    "event_time_year_9999": ("ads_click", _set_time("event_time", 253_402_300_799), "event_time_out_of_range"),
    "event_time_negative_nanos": ("ads_click", _set_time("event_time", 1_764_162_300, -1), "event_time_out_of_range"),
    "ingest_time_1e12": ("ads_click", _set_time("ingest_time", 10**12), "ingest_time_out_of_range"),
    "payload_not_utf8": ("ads_click", lambda e: setattr(e.events[1], "payload", b"\xff\xfe{"), "payload_not_utf8"),
    "payload_not_utf8_jsonl": (
        "login_event",
        lambda e: setattr(e.events[0], "payload", b'{"a":"\xed\xa0\x80"}'),
        "payload_not_utf8",
    ),
    "envelope_id_1100": ("ads_click", lambda e: setattr(e, "envelope_id", "a" * 1100), "bad_envelope_id"),
    "envelope_id_newline": ("ads_click", lambda e: setattr(e, "envelope_id", "x\ny"), "bad_envelope_id"),
    "envelope_id_slash": (
        "ads_click",
        lambda e: setattr(e, "envelope_id", "../../logs/ads_click/2026/11/26/13/_manifest-g0001.json#"),
        "bad_envelope_id",
    ),
}


def _pipeline() -> tuple[MemoryStore, MessageHandler, FakeDeadLetter, Metrics]:
    store, metrics, dlq = MemoryStore(), Metrics(), FakeDeadLetter()
    lander = Lander(store, CAT.categories, metrics)  # the catalog's categories: their payload formats count
    return store, MessageHandler(lander, dlq, metrics, sleep=lambda _: None), dlq, metrics


@pytest.mark.parametrize("case", sorted(POISON))
def test_poison_is_dead_lettered_and_the_good_envelope_of_the_hour_lands_and_commits(case: str) -> None:
    category, mutate, reason = POISON[case]
    store, handle, dlq, metrics = _pipeline()
    good = make_envelope(category, ["g1", "g2", "g3"], H + dt.timedelta(minutes=1), envelope_id="good-1")
    bad = _tampered(category, mutate)
    ok = FakeMessage(good.data, good.attributes, message_id="good")
    handle(bad)
    handle(ok)

    assert bad.calls == ["ack"] and ok.calls == ["ack"]  # poison: dead-lettered, then acked; never redelivered
    [(data, attrs)] = dlq.published
    assert data == bad.data and attrs["reason"] == reason and attrs["detail"]
    assert metrics.dead_lettered.labels(reason)._value.get() == 1
    staged = [n for n in store.names() if n.startswith("staging/")]
    assert staged == [f"staging/{category}/2026/11/26/13/good-1.pb.zst"]  # nothing of the poison was written

    fin = Finalizer(store, CAT, metrics, FinalizeSettings(target_file_bytes=1 << 20, lateness=dt.timedelta(0)))
    assert fin.run_pass([category], lambda p: True)  # committed, and no failing partition
    assert fin.failures == 0
    assert fin.finalize_partition(Partition(category, H)) == []  # already committed: nothing pending
    rows = [
        r
        for name in store.names()
        if "/part-g" in name
        for r in records.decode_rows(store.read(name), CAT.category(category))
    ]
    assert sorted(r["event_id"] for r in rows) == ["g1", "g2", "g3"]


def test_a_bytes_category_keeps_binary_payloads() -> None:
    """trace_span's payload_format is bytes: a payload that is not UTF-8 is data, landed and committed as is."""
    store, handle, dlq, _ = _pipeline()
    msg = _tampered("trace_span", lambda e: setattr(e.events[1], "payload", b"\xff\xfe\x00\x01"), "bin-1")
    handle(msg)
    assert msg.calls == ["ack"] and not dlq.published
    fin = Finalizer(store, CAT, Metrics(), FinalizeSettings(target_file_bytes=1 << 20, lateness=dt.timedelta(0)))
    committed = fin.finalize_partition(Partition("trace_span", H))  # one manifest per shard (finalize_shards)
    assert sum(m.total_events for m in committed) == 2
    rows = [
        r
        for m in committed
        for n in m.file_names
        for r in records.decode_rows(store.read(n), CAT.category("trace_span"))
    ]
    assert b"\xff\xfe\x00\x01" in [r["payload"] for r in rows]


def test_a_claimed_hour_outside_the_valid_times_is_not_trusted() -> None:
    """Attributes claiming year 1 (a partition path of ``1/01/01/00``, which the finalizer never lists) or the last
    hour of 9999 (whose end is no datetime) must not name the partition: the events' own hour does."""
    for lo, hi in (("0001-01-01T00:00:00.000000Z", "0001-01-01T00:10:00.000000Z"),
                   ("9999-12-31T23:00:00.000000Z", "9999-12-31T23:59:59.000000Z")):  # fmt: skip
        store, handle, dlq, _ = _pipeline()
        enc = make_envelope("ads_click", ["c1"], H, envelope_id="claim-1")
        msg = FakeMessage(enc.data, {**enc.attributes, "min_event_time": lo, "max_event_time": hi})
        handle(msg)
        assert msg.calls == ["ack"] and not dlq.published
        assert [n for n in store.names() if n.startswith("staging/")] == [
            "staging/ads_click/2026/11/26/13/claim-1.pb.zst"
        ]


def test_the_worker_gives_the_lander_its_categories_payload_formats() -> None:
    """The worker builds each tier's Lander from the catalog's Category objects, so json payloads are checked."""
    import inspect

    from replicator import worker

    src = inspect.getsource(worker.Worker.start)
    assert "Lander(self._store, self._catalog.categories_in(tier)" in src
