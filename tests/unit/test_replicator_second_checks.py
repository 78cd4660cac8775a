"""Second tests for replicator mutants that only one unit test caught (docs/guarantees.md, "Mutation audit").

Each test reaches the guarded line by another path than the test that already caught its mutant: a real race for
orphan collection, late data with an unchanged staging count, claims through the message handler, the dead-letter
publish through ``PubsubDeadLetter`` with exactly-once acks, and a 412 through ``GcsStore`` on a fake GCS.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import pytest

from replicator.finalize import MAX_GENERATIONS_PER_CALL, Finalizer, FinalizeSettings
from replicator.gcs_upload import MultipartUploader
from replicator.handler import MessageHandler, PubsubDeadLetter
from replicator.landing import Lander
from replicator.layout import Layout, Partition, parse_partition_dir
from replicator.manifest import Manifest
from replicator.metrics import Metrics
from replicator.records import decode_rows, micros_to_datetime
from replicator.retry import RetryPolicy
from replicator.scan import list_manifests
from replicator.store import Created, MemoryStore, crc32c_b64
from replicator.store_gcs import GcsStore
from replicator.synth import make_envelope
from service.catalog import load_catalog
from tests.unit.replicator_support import FakeMessage

pytestmark = pytest.mark.unit

CAT = load_catalog()
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
P = Partition("ads_click", H)


def _rows(store: MemoryStore, category: str = "ads_click") -> list[tuple[dt.datetime, dict[str, Any]]]:
    """(partition hour, row) of every committed row, read through the manifests as a reader does."""
    out = []
    for _, m in list_manifests(store, [category]):
        for f in m.files:
            out += [(m.partition_hour, r) for r in decode_rows(store.read(f.name), CAT.category(category))]
    return out


def _land(lander: Lander, ids: list[str], when: dt.datetime | list[dt.datetime] = H) -> None:
    enc = make_envelope("ads_click", ids, when)
    lander.land(enc.data, enc.attributes)


# --- orphan collection must leave a racing writer's next generation alone (G3) ------------------------------------


class _PausingStore(MemoryStore):
    """Holds the create of one manifest until ``go`` is set: a finalizer stopped between its data files and its
    commit point, as another process is at any moment of a race."""

    def __init__(self, manifest: str) -> None:
        super().__init__()
        self.manifest = manifest
        self.at_manifest = threading.Event()
        self.go = threading.Event()

    def create_if_absent(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
    ) -> Created:
        if name == self.manifest:
            self.at_manifest.set()
            assert self.go.wait(30), "the test never released the paused writer"
        return super().create_if_absent(name, data, metadata, content_type)


def test_orphan_collection_leaves_the_files_of_a_writer_racing_for_the_next_generation() -> None:
    # Finalizer A commits MAX_GENERATIONS_PER_CALL generations while data keeps arriving, then stops with data still
    # pending. Meanwhile finalizer B (another worker) has written the next generation's files and is about to create
    # its manifest. A's orphan collection sees B's files unreferenced: deleting them makes B commit a manifest that
    # names missing files (mutation audit: "orphan collection deleting a racing writer's files").
    store = _PausingStore(Layout().manifest(P, MAX_GENERATIONS_PER_CALL + 1))
    lander = Lander(store, ["ads_click"], Metrics())
    a = Finalizer(store, CAT, Metrics(), FinalizeSettings(target_file_bytes=10_000, writer="a"))
    b = Finalizer(store, CAT, Metrics(), FinalizeSettings(target_file_bytes=10_000, writer="b"))
    b_done: list[list[Manifest]] = []
    b_errors: list[BaseException] = []

    def run_b() -> None:
        try:
            b_done.append(b.finalize_partition(P))
        except BaseException as exc:  # reported by the assertions below
            b_errors.append(exc)

    b_thread = threading.Thread(target=run_b, name="finalizer-b", daemon=True)
    b_files: list[str] = []
    arrivals = iter(range(1, 100))

    class Race:
        def on_commit(self, manifest: Manifest, manifest_name: str) -> None:
            _land(lander, [f"e{next(arrivals)}"])  # a redelivery lands after each commit
            if manifest.generation == MAX_GENERATIONS_PER_CALL:
                b_thread.start()  # B sees the newest arrival pending and writes generation MAX+1 ...
                while not store.at_manifest.wait(0.05):  # ... up to its manifest
                    assert b_thread.is_alive(), b_errors
                b_files.extend(n for n in store.names() if f"/part-g{MAX_GENERATIONS_PER_CALL + 1:04d}-" in n)

    a.listeners.append(Race())
    _land(lander, ["e0"])
    committed = a.finalize_partition(P)  # A stops with data pending, and collects orphans
    store.go.set()  # B commits
    b_thread.join(30)
    assert len(committed) == MAX_GENERATIONS_PER_CALL and b_files
    assert not b_thread.is_alive() and b_errors == []
    [[theirs]] = b_done
    assert (theirs.generation, theirs.writer, theirs.total_events) == (MAX_GENERATIONS_PER_CALL + 1, "b", 1)
    missing = [f.name for _, m in list_manifests(store, ["ads_click"]) for f in m.files if store.stat(f.name) is None]
    assert missing == [], "a committed manifest names data files that A's orphan collection deleted"
    ids = collections.Counter(r["event_id"] for _, r in _rows(store))
    assert ids == collections.Counter(f"e{i}" for i in range(MAX_GENERATIONS_PER_CALL + 1))


# --- late data is rescanned whatever the staging count (G1, G3) -----------------------------------------------------


def test_late_data_is_committed_when_the_lifecycle_rule_keeps_the_staging_count_unchanged() -> None:
    # A complete partition is skipped while its staging names match what its manifests consumed. Here the bucket's
    # lifecycle rule deletes the partition's old staging object in the same interval as a late one arrives: the count
    # is the same, the names are not (mutation audit: "late data never rescanned").
    store = MemoryStore()
    lander = Lander(store, ["ads_click"], Metrics())
    fin = Finalizer(store, CAT, Metrics(), FinalizeSettings(target_file_bytes=10_000, writer="t"))
    other = Partition("ads_click", H + dt.timedelta(hours=1))
    _land(lander, ["a1"])
    _land(lander, ["b1"], other.hour)
    assert sorted(m.partition_hour for m in fin.run_pass(["ads_click"], lambda p: True)) == [H, other.hour]
    assert fin.run_pass(["ads_click"], lambda p: True) == []  # both complete: nothing to do
    [old] = [n for n in store.names() if n.startswith(f"{Layout().staging_prefix}/{P.path}/")]
    store.delete(old)  # what the lifecycle rule does after staging_retention_days
    _land(lander, ["a2", "a1"])  # late: a new event and a retry of a committed one
    late = fin.run_pass(["ads_click"], lambda p: True)
    assert [(m.partition_hour, m.generation, m.total_events, m.duplicates_dropped) for m in late] == [(H, 2, 1, 1)]
    assert sorted(r["event_id"] for _, r in _rows(store)) == ["a1", "a2", "b1"]
    assert fin.run_pass(["ads_click"], lambda p: True) == []


# --- a claimed hour names the partition only when it is one valid hour (G2, G3) -------------------------------------

_CLAIMS = {
    "year 1": ("0001-01-01T00:00:00.000000Z", "0001-01-01T00:10:00.000000Z"),
    "last hour of 9999": ("9999-12-31T23:00:00.000000Z", "9999-12-31T23:59:59.000000Z"),
    "two hours": ("2026-11-26T13:50:00.000000Z", "2026-11-26T14:10:00.000000Z"),
    "inverted": ("2026-11-26T14:10:00.000000Z", "2026-11-26T13:50:00.000000Z"),
    "naive": ("2026-11-26T13:50:00", "2026-11-26T13:55:00"),
}


@pytest.mark.parametrize("claim", sorted(_CLAIMS))
def test_a_claim_that_is_not_one_valid_hour_lands_each_event_in_its_own_hour(claim: str) -> None:
    # The lander's fast path trusts min/max_event_time attributes that name one valid hour and skips parsing the
    # events. Any other claim must send it to the events' own hours: every event is then committed once, in the
    # partition of its event time, with nothing misplaced (mutation audit: "the claimed-hour check").
    lo, hi = _CLAIMS[claim]
    store, metrics = MemoryStore(), Metrics()
    handler = MessageHandler(Lander(store, ["ads_click"], metrics), _NeverDeadLetter(), metrics)
    times = [H + dt.timedelta(minutes=50), H + dt.timedelta(minutes=70)]
    enc = make_envelope("ads_click", ["m1", "m2"], times)
    msg = FakeMessage(enc.data, {**enc.attributes, "min_event_time": lo, "max_event_time": hi})
    handler(msg)
    assert msg.calls == ["ack"]
    staged = [parse_partition_dir(n, Layout().staging_prefix) for n in store.names()]
    assert staged == [P, Partition("ads_click", H + dt.timedelta(hours=1))]
    fin = Finalizer(store, CAT, metrics, FinalizeSettings(target_file_bytes=10_000))
    for p in staged:
        assert p is not None
        fin.finalize_partition(p)
    rows = _rows(store)
    assert sorted(r["event_id"] for _, r in rows) == ["m1", "m2"]
    for hour, r in rows:
        assert hour <= micros_to_datetime(r["event_time"]) < hour + dt.timedelta(hours=1), r["event_id"]
    assert metrics.misplaced_events.labels("ads_click")._value.get() == 0


def test_a_claim_of_one_hour_in_another_offset_lands_in_that_utc_hour() -> None:
    store, metrics = MemoryStore(), Metrics()
    enc = make_envelope("ads_click", ["z1"], H + dt.timedelta(minutes=5))
    attrs = {
        **enc.attributes,
        "min_event_time": "2026-11-26T15:05:00+02:00",
        "max_event_time": "2026-11-26T15:06:00+02:00",
    }
    landed = Lander(store, ["ads_click"], metrics).land(enc.data, attrs)
    assert [parse_partition_dir(n, Layout().staging_prefix) for n in landed.names] == [P]


class _NeverDeadLetter:
    def publish(self, data: bytes, attributes: Mapping[str, str]) -> None:
        raise AssertionError("nothing here is poison")


# --- a poison message is acked only once its dead letter is published (G1, G5) --------------------------------------


class _PubsubClient:
    """The ``PublisherClient.publish`` that ``PubsubDeadLetter`` calls: its futures time out while ``down``."""

    def __init__(self) -> None:
        self.down = True
        self.published: list[tuple[str, bytes, dict[str, str]]] = []

    def publish(self, topic: str, data: bytes, **attributes: str) -> Future[str]:
        fut: Future[str] = Future()
        if self.down:
            fut.set_exception(TimeoutError("dead-letter publish not confirmed"))
        else:
            self.published.append((topic, data, attributes))
            fut.set_result("dlq-1")
        return fut


def test_a_poison_message_is_never_acked_before_its_dead_letter_is_confirmed() -> None:
    # Exactly-once delivery on (acks go through ack_with_response) and the real PubsubDeadLetter: while the dead-letter
    # topic does not confirm, each delivery is nacked, never acked in any form and never re-raised; the first
    # delivery after it recovers is dead-lettered once and acked (mutation audit: "ack when the dead-letter publish
    # fails").
    client = _PubsubClient()
    store, metrics = MemoryStore(), Metrics()
    dead_letter = PubsubDeadLetter(client, "projects/p/topics/lp-core-dead-letter", timeout=0.1)
    handler = MessageHandler(Lander(store, ["ads_click"], metrics), dead_letter, metrics, exactly_once=True)
    unknown = make_envelope("app_log", ["x"], H)  # a valid envelope of a category this worker does not serve
    for attempt in range(3):
        msg = FakeMessage(unknown.data, unknown.attributes, message_id="poison-1")
        handler(msg)
        assert msg.calls == ["nack"], f"delivery {attempt}: {msg.calls}"
    assert metrics.land_errors.labels("dead_letter_publish")._value.get() == 3
    assert metrics.land_errors.labels("unexpected")._value.get() == 0
    assert metrics.dead_lettered.labels("unknown_category")._value.get() == 0
    assert client.published == [] and store.names() == []
    client.down = False
    msg = FakeMessage(unknown.data, unknown.attributes, message_id="poison-1")
    handler(msg)
    assert msg.calls == ["ack_with_response"]
    [(topic, data, attrs)] = client.published
    assert topic == "projects/p/topics/lp-core-dead-letter" and data == unknown.data
    assert attrs["reason"] == "unknown_category" and attrs["original_message_id"] == "poison-1"
    assert metrics.dead_lettered.labels("unknown_category")._value.get() == 1
    assert store.names() == []


# --- a 412 from the upload means "exists": the redelivery after a crash is acked (G1, G2) -------------------------


class _GcsResponse:
    def __init__(self, status: int, data: bytes = b"") -> None:
        self.status = status
        self.data = data


class _FakeGcs:
    """The JSON API's single-request upload with ``ifGenerationMatch=0``: 200 creates, 412 if the name exists."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.posts = 0

    def urlopen(self, method: str, url: str, **kw: Any) -> _GcsResponse:
        assert method == "POST" and "ifGenerationMatch=0" in url
        self.posts += 1
        head, data, _tail = kw["body"]
        resource = json.loads(head.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 1)[0])
        if resource["name"] in self.objects:
            return _GcsResponse(412, b'{"error": {"code": 412, "message": "conditionNotMet"}}')
        self.objects[resource["name"]] = bytes(data)
        return _GcsResponse(200, b"{}")


class _Blob:
    def __init__(self, data: bytes) -> None:
        self.crc32c = crc32c_b64(data)
        self.size = len(data)


class _Bucket:
    """What ``GcsStore._existing`` asks after a 412."""

    def __init__(self, gcs: _FakeGcs) -> None:
        self._gcs = gcs

    def get_blob(self, name: str, **_: Any) -> _Blob | None:
        data = self._gcs.objects.get(name)
        return None if data is None else _Blob(data)


class _Client:
    def __init__(self, gcs: _FakeGcs) -> None:
        self._gcs = gcs

    def bucket(self, name: str) -> _Bucket:
        return _Bucket(self._gcs)


def _gcs_store() -> tuple[GcsStore, _FakeGcs]:
    gcs = _FakeGcs()
    uploader = MultipartUploader(None, "http://127.0.0.1:1/", "bkt")
    uploader._http = gcs  # type: ignore[assignment]
    return GcsStore(_Client(gcs), "bkt", RetryPolicy(deadline=1.0), uploader=uploader), gcs


def test_a_412_on_create_is_the_existing_object_not_a_failure_and_not_a_creation() -> None:
    # The finalizer reuses an existing data file only if its crc32c equals what it meant to write, and a manifest
    # commit is won only by created=True: a 412 must come back as created=False with the existing object's crc32c
    # and size, after one request (mutation audit: "the 412 mapping in the uploader").
    store, gcs = _gcs_store()
    assert store.create_if_absent("logs/x/m.json", b"first", None, "application/json") == Created(
        True, crc32c_b64(b"first"), 5
    )
    again = store.create_if_absent("logs/x/m.json", b"second writer", None, "application/json")
    assert again == Created(False, crc32c_b64(b"first"), 5)
    assert gcs.posts == 2 and gcs.objects == {"logs/x/m.json": b"first"}


def test_the_redelivery_after_a_crash_between_upload_and_ack_is_acked_on_gcs() -> None:
    # A worker uploaded the staging object and died before acking: Pub/Sub redelivers, the upload answers 412 and the
    # message must be acked without a second object (G1: not nacked forever; G2: not landed twice).
    store, gcs = _gcs_store()
    metrics = Metrics()
    handler = MessageHandler(Lander(store, ["ads_click"], metrics), _NeverDeadLetter(), metrics, sleep=lambda _: None)
    enc = make_envelope("ads_click", ["r1", "r2"], H)
    first, redelivered = FakeMessage(enc.data, enc.attributes), FakeMessage(enc.data, enc.attributes, "m2")
    handler(first)
    handler(redelivered)
    assert (first.calls, redelivered.calls) == (["ack"], ["ack"])
    assert list(gcs.objects) == [Layout().staging_object(P, enc.envelope_id)]
    assert gcs.objects[Layout().staging_object(P, enc.envelope_id)] == enc.data
    assert metrics.objects_existing.labels("staging")._value.get() == 1
    assert metrics.objects_written.labels("staging")._value.get() == 1
    assert sum(metrics.land_errors.labels(k)._value.get() for k in ("permanent", "transient_exhausted")) == 0
