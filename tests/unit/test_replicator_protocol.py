"""Landing + finalization protocol on the in-memory store: exactly-once under redelivery, races, crashes, late data."""

from __future__ import annotations

import collections
import datetime as dt

import pytest

from replicator.errors import StoreError
from replicator.files import ConflictingDataFile
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Layout, Partition
from replicator.manifest import Manifest
from replicator.metrics import Metrics
from replicator.records import decode_rows
from replicator.scan import list_manifests, read_partition
from replicator.store import MemoryStore
from replicator.synth import make_envelope
from service.catalog import load_catalog
from service.envelope import PoisonEnvelope
from tests.unit.replicator_support import NoManifestStore

pytestmark = pytest.mark.unit

CAT = load_catalog()
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
P = Partition("ads_click", H)


def committed_ids(store: MemoryStore, category: str = "ads_click") -> list[str]:
    ids: list[str] = []
    for _, m in list_manifests(store, [category]):
        for f in m.files:
            ids += [r["event_id"] for r in decode_rows(store.read(f.name), CAT.category(category))]
    return ids


def setup(target: int = 10_000) -> tuple[MemoryStore, Lander, Finalizer]:
    store = MemoryStore()
    metrics = Metrics()
    lander = Lander(store, [c.name for c in CAT.categories], metrics)
    fin = Finalizer(store, CAT, metrics, FinalizeSettings(target_file_bytes=target, writer="test"))
    return store, lander, fin


def test_redelivery_and_duplicate_publish_land_once() -> None:
    store, lander, fin = setup()
    enc = make_envelope("ads_click", [f"e{i}" for i in range(50)], H + dt.timedelta(minutes=5))
    first = lander.land(enc.data, enc.attributes)
    again = lander.land(enc.data, enc.attributes)
    assert (first.created, again.created) == (1, 0)
    assert first.names == again.names == (Layout().staging_object(P, enc.envelope_id),)
    assert store.read(first.names[0]) == enc.data  # verbatim body
    fin.finalize_partition(P)
    assert sorted(committed_ids(store)) == sorted(f"e{i}" for i in range(50))


def test_envelope_spanning_hours_is_split_per_hour() -> None:
    store, lander, fin = setup()
    times = [H + dt.timedelta(minutes=50), H + dt.timedelta(minutes=70), H + dt.timedelta(minutes=130)]
    enc = make_envelope("ads_click", ["a", "b", "c"], times)
    landed = lander.land(enc.data, enc.attributes)
    assert landed.created == 3
    assert [n.split("/")[5] for n in landed.names] == ["13", "14", "15"]
    for h in range(3):
        fin.finalize_partition(Partition("ads_click", H + dt.timedelta(hours=h)))
    assert sorted(committed_ids(store)) == ["a", "b", "c"]


def test_same_event_id_in_two_envelopes_is_committed_once_even_across_generations() -> None:
    store, lander, fin = setup()
    a = make_envelope("ads_click", ["x1", "x2", "x3"], H)
    b = make_envelope("ads_click", ["x2", "x4"], H)  # a retry through another front-end
    lander.land(a.data, a.attributes)
    lander.land(b.data, b.attributes)
    [m1] = fin.finalize_partition(P)
    assert m1.duplicates_dropped == 1
    c = make_envelope("ads_click", ["x3", "x5"], H)  # late, after the commit: delta generation
    lander.land(c.data, c.attributes)
    [m2] = fin.finalize_partition(P)
    assert (m2.generation, m2.total_events, m2.duplicates_dropped) == (2, 1, 1)
    assert sorted(committed_ids(store)) == ["x1", "x2", "x3", "x4", "x5"]
    state = read_partition(store, P)
    assert state.state == "complete" and state.success


def test_success_marker_written_once_after_first_commit() -> None:
    store, lander, fin = setup()
    enc = make_envelope("ads_click", ["s1"], H)
    lander.land(enc.data, enc.attributes)
    assert read_partition(store, P).state == "open"
    fin.finalize_partition(P)
    assert store.stat(Layout().success_marker(P)) is not None
    assert fin.finalize_partition(P) == []


def test_files_split_by_target_size_and_are_deterministic() -> None:
    store, lander, fin = setup(target=3_000)
    for k in range(5):
        e = make_envelope("ads_click", [f"k{k}-{i}" for i in range(100)], H, payload_bytes=500)
        lander.land(e.data, e.attributes)
    [m] = fin.finalize_partition(P)
    assert len(m.files) > 2 and m.total_events == 500
    # A rerun of the same generation by another writer (fresh store copy, same inputs) produces identical bytes.
    store2, _, fin2 = setup(target=3_000)
    for name in read_partition(store, P).consumed:
        store2.create_if_absent(name, store.read(name), store.stat(name).metadata)  # type: ignore[union-attr]
    [m2] = fin2.finalize_partition(P)
    assert [(f.name, f.crc32c) for f in m2.files] == [(f.name, f.crc32c) for f in m.files]


def test_rerun_after_crash_before_manifest_reuses_identical_files() -> None:
    store, lander, fin = setup(target=5_000)
    e = make_envelope("ads_click", [f"r{i}" for i in range(200)], H, payload_bytes=100)
    lander.land(e.data, e.attributes)
    # Simulate a crash after the data files: run F3 by committing into a throwaway store, then copy only the files.
    scratch, _, fin_scratch = setup(target=5_000)
    scratch.create_if_absent(e_name := lander.land(e.data, e.attributes).names[0], e.data, e.attributes)
    [m] = fin_scratch.finalize_partition(P)
    for f in m.files[:2]:
        store.create_if_absent(f.name, scratch.read(f.name))
    assert [o.name for o in read_partition(store, P).pending] == [e_name]
    [m_real] = fin.finalize_partition(P)
    assert m_real.files == m.files
    assert sorted(committed_ids(store)) == sorted(f"r{i}" for i in range(200))


def test_conflicting_data_file_is_refused() -> None:
    store, lander, fin = setup()
    e = make_envelope("ads_click", ["c1"], H)
    lander.land(e.data, e.attributes)
    state = read_partition(store, P)
    from replicator.generation import generation_token

    token = generation_token(1, [o.name for o in state.pending], CAT.category("ads_click"), 10_000)
    store.create_if_absent(Layout().data_file(P, 1, token, 0, CAT.category("ads_click").file_format), b"garbage")
    with pytest.raises(ConflictingDataFile):
        fin.finalize_partition(P)
    assert read_partition(store, P).manifests == ()


def test_lost_commit_race_retries_with_the_rest() -> None:
    store, lander, fin = setup()
    a = make_envelope("ads_click", ["a1", "a2"], H)
    lander.land(a.data, a.attributes)
    stale = read_partition(store, P)  # our finalizer listed only envelope a ...
    b = make_envelope("ads_click", ["b1", "a2"], H)
    lander.land(b.data, b.attributes)
    other = Finalizer(store, CAT, Metrics(), FinalizeSettings(writer="other"))
    [theirs] = other.finalize_partition(P)  # ... while another one committed generation 1 with a and b
    assert fin._commit_generation(stale) is None  # our generation 1 loses the manifest precondition
    c = make_envelope("ads_click", ["c1", "b1"], H)
    lander.land(c.data, c.attributes)
    committed = fin.finalize_partition(P)
    assert [m.generation for m in committed] == [2]
    assert theirs.writer == "other" and committed[0].duplicates_dropped == 1
    assert sorted(committed_ids(store)) == ["a1", "a2", "b1", "c1"]
    referenced = {f.name for _, m in list_manifests(store, ["ads_click"]) for f in m.files}
    assert {o.name for o in read_partition(store, P).data_files} == referenced  # the loser's orphans were removed


def test_poison_and_unknown_category_raise_without_writing() -> None:
    store, lander, _ = setup()
    with pytest.raises(PoisonEnvelope) as bad:
        lander.land(b"not zstd", {"logpipe_format": "logpipe.v1.Envelope", "logpipe_compression": "zstd"})
    assert bad.value.reason == "bad_compression"
    only_core = Lander(store, ["ads_click"], Metrics())
    e = make_envelope("app_log", ["z"], H)
    with pytest.raises(PoisonEnvelope) as unknown:
        only_core.land(e.data, e.attributes)
    assert unknown.value.reason == "unknown_category"
    assert store.names() == []


def test_manifest_json_round_trip() -> None:
    _, lander, fin = setup()
    e = make_envelope("login_event", ["j1", "j2"], H)
    lander.land(e.data, e.attributes)
    [m] = fin.finalize_partition(Partition("login_event", H))
    assert Manifest.from_json(m.to_json()) == m
    assert m.files[0].name.endswith(".jsonl.gz") and m.partition_label == "2026-11-26T13"


def test_orphans_of_a_crashed_finalizer_are_collected_once_the_generation_is_committed() -> None:
    store, lander, fin = setup()
    e = make_envelope("ads_click", ["o1"], H)
    lander.land(e.data, e.attributes)
    orphan = Layout().data_file(P, 1, "deadbeefdeadbeef", 0, CAT.category("ads_click").file_format)
    future = Layout().data_file(P, 2, "deadbeefdeadbeef", 0, CAT.category("ads_click").file_format)
    store.create_if_absent(orphan, b"half-written by a crashed finalizer")
    store.create_if_absent(future, b"maybe still being written for generation 2")
    fin.finalize_partition(P)
    names = store.names()
    assert orphan not in names and future in names
    assert sorted(committed_ids(store)) == ["o1"]


class _CountingStore(MemoryStore):
    """Counts listings per prefix, to see which partitions a pass reads."""

    def __init__(self) -> None:
        super().__init__()
        self.listed: list[str] = []

    def list(self, prefix: str, *, start_offset: str = ""):  # type: ignore[no-untyped-def]
        self.listed.append(prefix)
        return super().list(prefix, start_offset=start_offset)


def test_run_pass_skips_open_and_complete_partitions_but_catches_late_data() -> None:
    store = _CountingStore()
    metrics = Metrics()
    lander = Lander(store, [c.name for c in CAT.categories], metrics)
    fin = Finalizer(store, CAT, metrics, FinalizeSettings(target_file_bytes=10_000, writer="test"))
    later = Partition("ads_click", H + dt.timedelta(hours=1))
    for env in (make_envelope("ads_click", ["p1", "p2"], H), make_envelope("ads_click", ["o1"], later.hour)):
        lander.land(env.data, env.attributes)

    def closable(p: Partition) -> bool:
        return p.hour == H

    [m1] = fin.run_pass(["ads_click"], closable)
    assert m1.total_events == 2
    layout = Layout()
    assert layout.partition_dir(later) not in store.listed  # the open hour is never read
    store.listed.clear()
    assert fin.run_pass(["ads_click"], closable) == []
    assert store.listed == ["staging/ads_click/"]  # complete: one listing of the category, no partition read

    late = make_envelope("ads_click", ["p2", "p3"], H)  # after the commit: a delta generation
    lander.land(late.data, late.attributes)
    [m2] = fin.run_pass(["ads_click"], closable)
    assert (m2.generation, m2.total_events, m2.duplicates_dropped) == (2, 1, 1)
    assert sorted(committed_ids(store)) == ["p1", "p2", "p3"]


def test_complete_partitions_are_forgotten_once_their_staging_objects_are_gone() -> None:
    """A long-running worker remembers a digest per complete partition; when the lifecycle rule has deleted a
    partition's staging objects, the entry goes too (G4), and the committed data stays."""
    store, lander, fin = setup()
    other_hour = Partition("ads_click", H + dt.timedelta(hours=1))
    for env in (make_envelope("ads_click", ["a"], H), make_envelope("ads_click", ["b"], other_hour.hour)):
        lander.land(env.data, env.attributes)
    assert len(fin.run_pass(["ads_click"], lambda p: True)) == 2
    assert set(fin._complete) == {P, other_hour}
    for name in store.names():
        if name.startswith(f"{Layout().staging_prefix}/{P.path}/"):
            store.delete(name)  # what the lifecycle rule does after staging_retention_days
    assert fin.run_pass(["ads_click"], lambda p: True) == []
    assert set(fin._complete) == {other_hour}
    assert sorted(committed_ids(store)) == ["a", "b"]


def test_ids_cache_sees_generations_committed_by_another_finalizer() -> None:
    store, lander, fin = setup()
    other = Finalizer(store, CAT, Metrics(), FinalizeSettings(writer="other"))
    for ids, who in ((["k1"], fin), (["k2"], other), (["k2", "k1", "k3"], fin)):
        env = make_envelope("ads_click", ids, H)
        lander.land(env.data, env.attributes)
        who.finalize_partition(P)
    gens = [m for _, m in list_manifests(store, ["ads_click"])]
    assert [(m.generation, m.total_events, m.duplicates_dropped) for m in gens] == [(1, 1, 0), (2, 1, 0), (3, 1, 2)]
    assert sorted(committed_ids(store)) == ["k1", "k2", "k3"]


def test_data_that_keeps_arriving_is_committed_in_bounded_steps_without_error() -> None:
    from replicator.finalize import MAX_GENERATIONS_PER_CALL

    store, lander, fin = setup()
    arrivals = iter(range(100))

    class LandOnCommit:
        def on_commit(self, manifest: Manifest, manifest_name: str) -> None:
            env = make_envelope("ads_click", [f"late{next(arrivals)}"], H)  # a redelivery lands meanwhile
            lander.land(env.data, env.attributes)

    fin.listeners.append(LandOnCommit())
    first = make_envelope("ads_click", ["e0"], H)
    lander.land(first.data, first.attributes)
    committed = fin.finalize_partition(P)  # the old loop raised "lost 20 commit races" here
    assert len(committed) == MAX_GENERATIONS_PER_CALL
    assert read_partition(store, P).pending  # the newest arrival waits for the next pass
    fin.listeners.clear()
    assert len(fin.finalize_partition(P)) == 1
    assert len(committed_ids(store)) == MAX_GENERATIONS_PER_CALL + 1
    assert read_partition(store, P).state == "complete"


def test_ids_cache_of_one_partition_never_dedups_another() -> None:
    # G2: the finalizer caches the event ids of the last partition it worked on; used for another partition, a
    # retried event would be committed twice (mutation audit: every other test drives one partition).
    store, lander, fin = setup()
    p2 = Partition("ads_click", H + dt.timedelta(hours=1))
    for ids, when in ((["x"], p2.hour), (["a"], H)):
        enc = make_envelope("ads_click", ids, when)
        lander.land(enc.data, enc.attributes)
    fin.finalize_partition(p2)  # g1 of p2
    fin.finalize_partition(P)  # g1 of P: the cache now holds P's ids at generation 1
    late = make_envelope("ads_click", ["x", "y"], p2.hour)  # x: a client's retry of an event p2 committed
    lander.land(late.data, late.attributes)
    [m] = fin.finalize_partition(p2)
    assert (m.generation, m.total_events, m.duplicates_dropped) == (2, 1, 1)
    assert set(collections.Counter(committed_ids(store)).values()) == {1}


def test_no_success_marker_without_a_committed_manifest() -> None:
    # G3: _SUCCESS comes after the manifest, never before (mutation audit: only an e2e test caught the swap).
    store = NoManifestStore()
    lander = Lander(store, ["ads_click"], Metrics())
    enc = make_envelope("ads_click", ["s1"], H)
    lander.land(enc.data, enc.attributes)
    with pytest.raises(StoreError):
        Finalizer(store, CAT, Metrics(), FinalizeSettings(writer="t")).finalize_partition(P)
    assert store.stat(Layout().success_marker(P)) is None
