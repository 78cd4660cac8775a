"""An event the finalizer cannot convert never blocks its partition, and is never silently dropped.

Staging objects that landed before landing rejected such envelopes (or that hit a future conversion bug) hold events
without a valid row: a JSON payload that is not UTF-8, an event time outside BigQuery's TIMESTAMP range. Before the
fix, ``finalize_partition`` raised on every pass for such a partition: no manifest, no ``_SUCCESS``, and the good
events of every other producer of that hour were stuck. Now the partition commits everything else exactly once, and
each rejected event is listed in the manifest, counted, logged, and its raw bytes are copied to ``quarantine/``.
The staging objects are landed directly (``create_if_absent`` under the staging name), bypassing landing's checks.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest

from replicator import records
from replicator.errors import StoreError
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.generation import quarantine_object
from replicator.layout import Layout, Partition
from replicator.manifest import Manifest, ManifestError, RejectedEvent
from replicator.metrics import Metrics
from replicator.scan import list_manifests, read_partition
from replicator.store import MemoryStore
from replicator.synth import make_event
from service import envelope as envelope_format
from service.catalog import FieldType, load_catalog
from service.contract import Envelope, Event
from tests.unit.replicator_support import NoManifestStore

pytestmark = pytest.mark.unit

CAT = load_catalog()
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
LAYOUT = Layout()
BAD_UTF8 = b"\xff\xfe{"
FAR_FUTURE = 10**12  # seconds: year ~33658, past BigQuery's TIMESTAMP range and datetime's


def _event(category: str, event_id: str, seq: int = 0, pad: int = 0) -> Event:
    e = make_event(category, event_id, H + dt.timedelta(minutes=5, seconds=seq), seq=seq)
    if pad:  # incompressible, so that files are cut (the Avro size lags by one 16 KB block)
        e.payload = json.dumps({"seq": seq, "pad": random.Random(event_id).randbytes(pad).hex()}).encode()
    return e


def _land(store: MemoryStore, category: str, envelope_id: str, events: list[Event]) -> str:
    """Land ``events`` as one staging object of hour ``H``, as landing would store it, without landing's checks."""
    env = Envelope(envelope_id=envelope_id, category=category, frontend="test")
    env.events.extend(events)
    hour_us = int(H.timestamp()) * 1_000_000
    enc = envelope_format.encode_serialized(
        env.SerializeToString(),
        envelope_id=envelope_id,
        category=category,
        event_count=len(events),
        min_event_micros=hour_us,  # honest-looking attributes, as a third-party envelope could carry
        max_event_micros=hour_us,
    )
    name = LAYOUT.staging_object(Partition(category, H), envelope_id)
    assert store.create_if_absent(name, enc.data, enc.attributes, "application/vnd.logpipe.envelope+zstd").created
    return name


def _bad_utf8(category: str, event_id: str) -> Event:
    e = _event(category, event_id)
    e.payload = BAD_UTF8
    return e


def _bad_time(category: str, event_id: str) -> Event:
    e = _event(category, event_id)
    e.event_time.seconds = FAR_FUTURE
    return e


def _finalizer(store: MemoryStore, metrics: Metrics | None = None, target: int = 10_000) -> Finalizer:
    return Finalizer(store, CAT, metrics or Metrics(), FinalizeSettings(target_file_bytes=target, writer="test"))


def _committed_ids(store: MemoryStore, category: str) -> list[str]:
    return [
        r["event_id"]
        for _, m in list_manifests(store, [category])
        for f in m.files
        for r in records.decode_rows(store.read(f.name), CAT.category(category))
    ]


def _mixed_partition(store: MemoryStore, category: str) -> tuple[str, str]:
    """Two producers' objects: all good, and good events around one bad-UTF-8 and one out-of-range event."""
    good = _land(store, category, "env-a", [_event(category, f"g{i}", i) for i in range(3)])
    mixed = _land(
        store,
        category,
        "env-b",
        [_event(category, "b0"), _bad_utf8(category, "b1"), _bad_time(category, "b2"), _event(category, "b3", 3)],
    )
    return good, mixed


@pytest.mark.parametrize("category", ["ads_click", "login_event"])  # avro and jsonl_gz
def test_partition_commits_the_good_events_once_and_records_each_rejection(category: str) -> None:
    store, metrics = MemoryStore(), Metrics()
    _, mixed = _mixed_partition(store, category)
    p = Partition(category, H)
    fin = _finalizer(store, metrics)

    [m] = fin.finalize_partition(p)

    assert sorted(_committed_ids(store, category)) == ["b0", "b3", "g0", "g1", "g2"]
    assert (m.total_events, m.rejected_total, m.duplicates_dropped) == (5, 2, 0)
    assert [(r.source, r.index, r.event_id, r.reason) for r in m.rejected] == [
        (mixed, 1, "b1", "payload_not_utf8"),
        (mixed, 2, "b2", "event_time_out_of_range"),
    ]
    assert all(r.detail for r in m.rejected)
    stored = Manifest.from_json(store.read(LAYOUT.manifest(p, 1)))
    assert stored == m and stored.max_event_time is not None and stored.max_event_time.startswith("2026-11-26T13")
    for reason in ("payload_not_utf8", "event_time_out_of_range"):
        labels = {"category": category, "reason": reason}
        assert metrics.registry.get_sample_value("logpipe_replicator_unconvertible_events_total", labels) == 1
    assert LAYOUT.success_marker(p) in store.names()
    # The raw bytes outlive the staging lifecycle rule: one copy per staging object with rejections.
    copy = quarantine_object(mixed, LAYOUT)
    assert copy == f"quarantine/{category}/2026/11/26/13/env-b.pb.zst"
    assert [n for n in store.names() if n.startswith("quarantine/")] == [copy]
    assert store.read(copy) == store.read(mixed)
    assert store.stat(copy).metadata == store.stat(mixed).metadata  # type: ignore[union-attr]

    before = store.names()
    assert fin.finalize_partition(p) == [] and _finalizer(store).run_pass([category], lambda _: True) == []
    assert store.names() == before and fin.failures == 0


def test_an_unconvertible_event_is_logged_with_its_staging_object_and_event_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    _, mixed = _mixed_partition(store, "ads_click")
    with caplog.at_level("ERROR", logger="replicator.finalize"):
        _finalizer(store).finalize_partition(Partition("ads_click", H))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2
    assert all(mixed in e for e in errors) and "b1" in errors[0] and "b2" in errors[1]


def _objects(store: MemoryStore, prefix: str) -> dict[str, bytes]:
    return {n: store.read(n) for n in store.names() if n.startswith(prefix)}


def _content(m: Manifest) -> dict[str, Any]:
    d = m.to_dict()
    del d["created"], d["writer"]
    return d


def test_a_rerun_after_a_crash_before_the_manifest_writes_identical_files_and_manifest() -> None:
    crashing = NoManifestStore()
    for k in range(3):  # several staging objects and small files: the rejections fall between file cuts
        events = [_event("ads_click", f"e{k}-{i}", i, pad=1000) for i in range(40)]
        events[7], events[23] = _bad_utf8("ads_click", f"e{k}-7"), _bad_time("ads_click", f"e{k}-23")
        _land(crashing, "ads_click", f"env-{k}", events)
    p = Partition("ads_click", H)
    with pytest.raises(StoreError):
        _finalizer(crashing, target=20_000).finalize_partition(p)
    first_try = {n: d for n, d in _objects(crashing, "logs/").items() if "/part-" in n}
    assert len(first_try) > 2 and not read_partition(crashing, p).manifests

    store = MemoryStore()  # the same bucket, now healthy
    for name, data in _objects(crashing, "").items():
        store.create_if_absent(name, data, crashing.stat(name).metadata)  # type: ignore[union-attr]
    metrics = Metrics()
    [m] = _finalizer(store, metrics, target=20_000).finalize_partition(p)
    assert {f.name: store.read(f.name) for f in m.files} == first_try  # every file reused, none orphaned
    assert metrics.registry.get_sample_value("logpipe_replicator_objects_existing_total", {"kind": "data"}) == len(
        first_try
    )
    assert m.rejected_total == 6 and sorted(_committed_ids(store, "ads_click")) == sorted(
        f"e{k}-{i}" for k in range(3) for i in range(40) if i not in (7, 23)
    )

    fresh = MemoryStore()  # an independent finalizer on the same inputs: the same manifest content
    for name, data in _objects(crashing, "staging/").items():
        fresh.create_if_absent(name, data, crashing.stat(name).metadata)  # type: ignore[union-attr]
    [again] = _finalizer(fresh, target=20_000).finalize_partition(p)
    assert _content(again) == _content(m)


def test_a_later_valid_copy_of_a_rejected_event_id_is_committed_once() -> None:
    store = MemoryStore()
    p = Partition("ads_click", H)
    # Generation 1: a valid copy later in the same generation wins over the rejected one; a bad copy after a
    # committed one is a duplicate, not a rejection.
    _land(
        store, "ads_click", "env-1", [_event("ads_click", "a"), _bad_utf8("ads_click", "x"), _event("ads_click", "y")]
    )
    _land(store, "ads_click", "env-2", [_event("ads_click", "x"), _bad_time("ads_click", "y")])
    _land(store, "ads_click", "env-3", [_bad_utf8("ads_click", "z")])
    fin = _finalizer(store)
    [g1] = fin.finalize_partition(p)
    assert [r.event_id for r in g1.rejected] == ["x", "z"] and g1.duplicates_dropped == 1
    assert sorted(_committed_ids(store, "ads_click")) == ["a", "x", "y"]

    # Generation 2 (this finalizer's id cache): the rejected z was never "seen", so its valid retry commits.
    _land(store, "ads_click", "env-4", [_event("ads_click", "z"), _event("ads_click", "a")])
    [g2] = fin.finalize_partition(p)
    assert (g2.generation, g2.total_events, g2.duplicates_dropped, g2.rejected_total) == (2, 1, 1, 0)
    assert "rejected" not in g2.to_dict()

    # Generation 3 (a cold finalizer reads the ids from the files): z is committed now, so a third copy is a duplicate.
    _land(store, "ads_click", "env-5", [_event("ads_click", "z"), _bad_utf8("ads_click", "z")])
    [g3] = _finalizer(store).finalize_partition(p)
    assert (g3.generation, g3.total_events, g3.duplicates_dropped, g3.rejected_total) == (3, 0, 2, 0)
    ids = _committed_ids(store, "ads_click")
    assert sorted(ids) == ["a", "x", "y", "z"] and len(ids) == len(set(ids))


def test_a_row_the_encoder_refuses_is_rejected_and_the_generation_rewritten(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defense in depth: a conversion bug that event_to_row lets through still cannot block the partition."""
    store = MemoryStore()
    _land(store, "ads_click", "env-1", [_event("ads_click", f"e{i}", i, pad=1000) for i in range(30)])
    real = records.event_to_row

    def buggy(event: Event, category: Any, envelope_id: str) -> records.Row:
        row = real(event, category, envelope_id)
        if event.event_id == "e17":
            row["producer"] = 17  # not a string: fastavro refuses it, possibly after writing part of the record
        return row

    monkeypatch.setattr(records, "event_to_row", buggy)  # the finalizer calls records.event_to_row
    metrics = Metrics()
    [m] = _finalizer(store, metrics, target=20_000).finalize_partition(Partition("ads_click", H))
    assert len(m.files) > 1
    reused = metrics.registry.get_sample_value("logpipe_replicator_objects_existing_total", {"kind": "data"})
    assert reused and reused >= 1  # the rewrite found the files cut before e17 identical
    assert [(r.event_id, r.reason) for r in m.rejected] == [("e17", "encoding_error")]
    assert sorted(_committed_ids(store, "ads_click")) == sorted(f"e{i}" for i in range(30) if i != 17)
    assert {n for n in store.names() if "/part-" in n} == set(m.file_names)  # the files before e17 were reused


def test_manifests_without_the_rejected_fields_still_parse_and_clean_ones_do_not_write_them() -> None:
    store = MemoryStore()
    _land(store, "ads_click", "env-1", [_event("ads_click", "a")])
    [m] = _finalizer(store).finalize_partition(Partition("ads_click", H))
    assert b"rejected" not in m.to_json()  # a clean generation's manifest is byte-for-byte the older format
    assert (m.rejected_total, m.rejected) == (0, ())
    r = RejectedEvent("staging/x.pb.zst", "id", 3, "payload_not_utf8", "payload byte 0: invalid start byte")
    listed = Manifest.from_json(Manifest(**{**_fields(m), "rejected_total": 5, "rejected": (r,)}).to_json())
    assert (listed.rejected_total, listed.rejected) == (5, (r,))
    old = json.loads(m.to_json())
    assert Manifest.from_json(json.dumps({**old, "rejected": None, "rejected_total": None})) == m
    with pytest.raises(ManifestError):
        Manifest.from_json(json.dumps({**old, "rejected": [{"source": "s"}]}))


def test_an_object_that_only_breaks_a_newer_landing_rule_is_judged_event_by_event() -> None:
    """Landing validated each staging object under the rules of its day; a stricter ``envelope_format.decode`` must
    not make an older object undecodable (its partition would never commit). A corrupt object still fails."""
    store = MemoryStore()
    stray = _event("app_log", "s")  # an event of another category: decode refuses the envelope (mixed_categories)
    mixed = _land(store, "ads_click", "env-1", [_event("ads_click", "a"), stray, _event("ads_click", "c")])
    [m] = _finalizer(store).finalize_partition(Partition("ads_click", H))
    assert [(r.source, r.event_id, r.reason) for r in m.rejected] == [(mixed, "s", "wrong_category")]
    assert sorted(_committed_ids(store, "ads_click")) == ["a", "c"]

    corrupt = LAYOUT.staging_object(Partition("app_log", H), "env-x")
    store.create_if_absent(
        corrupt, b"not zstd", {"logpipe_format": envelope_format.FORMAT, "logpipe_compression": "zstd"}
    )
    with pytest.raises(envelope_format.PoisonEnvelope):
        _finalizer(store).finalize_partition(Partition("app_log", H))


def _fields(m: Manifest) -> dict[str, Any]:
    return {name: getattr(m, name) for name in Manifest.__dataclass_fields__}


def test_event_to_row_names_the_reason_and_nulls_unrepresentable_fields() -> None:
    ads = CAT.category("ads_click")
    with pytest.raises(records.UnconvertibleEvent) as utf:
        records.event_to_row(_bad_utf8("ads_click", "u"), ads, "env")
    assert utf.value.reason == "payload_not_utf8"
    with pytest.raises(records.UnconvertibleEvent) as far:
        records.event_to_row(_bad_time("ads_click", "t"), ads, "env")
    assert far.value.reason == "event_time_out_of_range"
    late = _event("ads_click", "i")
    late.ingest_time.seconds = -(10**12)
    with pytest.raises(records.UnconvertibleEvent) as ingest:
        records.event_to_row(late, ads, "env")
    assert ingest.value.reason == "ingest_time_out_of_range"
    ok = _event("ads_click", "edge")
    ok.event_time.seconds = records.MAX_MICROS // 1_000_000  # 9999-12-31T23:59:59Z still converts and encodes
    assert records.decode_rows(records.encode_rows([records.event_to_row(ok, ads, "e")], ads), ads)[0]["event_id"]

    # Extracted fields: a value the column cannot hold is NULL (the payload keeps the truth), never an error.
    assert records._extract("\ud800", FieldType.STRING) is None
    assert records._extract("0001-01-01T00:00:00+01:00", FieldType.TIMESTAMP) is None
    assert records._extract(10**400, FieldType.FLOAT64) is None
    assert records._extract(float("nan"), FieldType.FLOAT64) is None
    deep = _event("ads_click", "deep")
    deep.payload = b"[" * 100_000 + b"]" * 100_000  # valid JSON, too deep for json.loads and for BigQuery
    with pytest.raises(records.UnconvertibleEvent, match="payload_too_deep"):
        records.event_to_row(deep, ads, "env")
