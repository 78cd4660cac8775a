"""Finalizing one partition in shards (docs/design.md, "Sharded finalization").

What must hold: shard K of N commits exactly the events whose ``shard_of(event_id, N)`` is K, each once, deduplicated
against its own earlier generations; the shard count of a partition is fixed once (``_plan.json``) and every
finalizer follows it whatever its own configuration; ``_SUCCESS`` appears only once every shard has committed;
a staging object counts as consumed by the partition only once every shard consumed it; late data becomes a delta
per shard; a shard's orphans are collected by that shard only; workers claim shards, not partitions.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter

import pytest

from replicator import records
from replicator.claims import PartitionClaims
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import (
    WHOLE,
    Layout,
    Partition,
    Shard,
    manifest_generation,
    manifest_shard,
    part_shard_generation,
    shard_of,
)
from replicator.manifest import Manifest
from replicator.metrics import Metrics
from replicator.plan import PlanError, resolve_shards
from replicator.scan import list_manifests, read_partition
from replicator.store import MemoryStore
from replicator.synth import make_envelope
from service.catalog import Catalog, load_catalog

pytestmark = pytest.mark.unit

BASE = load_catalog()
H = dt.datetime(2026, 11, 26, 11, tzinfo=dt.UTC)
P = Partition("ads_click", H)
NOW = dt.datetime(2026, 11, 26, 15, tzinfo=dt.UTC)
LAYOUT = Layout()


def catalog(shards: int) -> Catalog:
    cats = tuple(
        c.model_copy(update={"finalize_shards": shards}) if c.name == "ads_click" else c for c in BASE.categories
    )
    return BASE.model_copy(update={"categories": cats})


def finalizer(store: MemoryStore, shards: int, writer: str = "w", claims: bool = False) -> Finalizer:
    metrics = Metrics()
    return Finalizer(
        store,
        catalog(shards),
        metrics,
        FinalizeSettings(target_file_bytes=20_000, writer=writer),
        clock=lambda: NOW,
        claims=PartitionClaims(store, writer, dt.timedelta(seconds=60), metrics, lambda: NOW) if claims else None,
    )


def land(store: MemoryStore, envelopes: list[list[str]]) -> None:
    lander = Lander(store, ["ads_click"], Metrics())
    for ids in envelopes:
        env = make_envelope("ads_click", ids, H + dt.timedelta(minutes=5), payload_bytes=200)
        lander.land(env.data, env.attributes)


def committed(store: MemoryStore) -> list[tuple[Shard, str]]:
    """(shard of the manifest, event id) of every committed row."""
    cat = BASE.category("ads_click")
    return [
        (m.shard, r["event_id"])
        for _, m in list_manifests(store, ["ads_click"])
        for f in m.files
        for r in records.decode_rows(store.read(f.name), cat)
    ]


def manifests(store: MemoryStore) -> list[tuple[str, Manifest]]:
    return list(list_manifests(store, ["ads_click"]))


def test_shard_names_parse_back_and_the_whole_partition_keeps_its_names() -> None:
    s = Shard(1, 3)
    assert LAYOUT.manifest(P, 2, s) == "logs/ads_click/2026/11/26/11/_manifest-s01of03-g0002.json"
    assert LAYOUT.manifest(P, 2) == "logs/ads_click/2026/11/26/11/_manifest-g0002.json"
    assert manifest_shard(LAYOUT.manifest(P, 2, s)) == s and manifest_generation(LAYOUT.manifest(P, 2, s)) == 2
    assert manifest_shard(LAYOUT.manifest(P, 7)) == WHOLE and manifest_generation(LAYOUT.manifest(P, 7)) == 7
    name = LAYOUT.data_file(P, 4, "abc", 3, BASE.category("ads_click").file_format, s)
    assert name == "logs/ads_click/2026/11/26/11/part-s01of03-g0004-abc-00003.avro"
    assert part_shard_generation(name) == (s, 4)
    assert part_shard_generation(LAYOUT.data_file(P, 4, "abc", 3, BASE.category("ads_click").file_format)) == (
        WHOLE,
        4,
    )
    assert manifest_shard("logs/ads_click/2026/11/26/11/_manifest-s05of03-g0001.json") is None
    assert manifest_shard(LAYOUT.success_marker(P)) is None and manifest_shard(LAYOUT.plan(P)) is None
    for bad in ((3, 3), (-1, 2), (0, 0), (0, 65)):
        with pytest.raises(ValueError):
            Shard(*bad)


def test_shard_of_is_a_pinned_function_of_the_id_that_spreads_ids_evenly() -> None:
    # Public (docs/formats.md): BLAKE2b-64 of the UTF-8 id, big-endian, mod N. Pinned: a change would split the
    # generations of a partition between shards differently and break dedup across them.
    assert [shard_of("0193a8c0-0000-7000-8000-000000000000", n) for n in (1, 2, 3, 16)] == [0, 1, 1, 13]
    counts = Counter(shard_of(f"id-{i}", 4) for i in range(8000))
    assert sorted(counts) == [0, 1, 2, 3] and all(1800 < c < 2200 for c in counts.values()), counts
    assert all(Shard(shard_of(f"id-{i}", 4), 4).owns(f"id-{i}") for i in range(100))


def test_the_plan_is_created_once_and_every_finalizer_follows_it() -> None:
    store = MemoryStore()
    assert resolve_shards(store, LAYOUT, P, 3, "a", NOW) == 3
    assert resolve_shards(store, LAYOUT, P, 1, "b", NOW) == 3, "the second finalizer adopts the plan"
    assert json.loads(store.read(LAYOUT.plan(P)))["writer"] == "a"
    assert read_partition(store, P).shards == 3, "readers take the count from the plan before any commit"
    with pytest.raises(PlanError):
        resolve_shards(MemoryStore(), LAYOUT, P, 0, "a", NOW)
    broken = MemoryStore()
    broken.create_if_absent(LAYOUT.plan(P), b'{"format": "logpipe.plan.v1", "shards": "x"}')
    with pytest.raises(PlanError):
        resolve_shards(broken, LAYOUT, P, 1, "a", NOW)


def test_a_partition_committed_before_plans_stays_whole() -> None:
    store = MemoryStore()
    land(store, [[f"a{i}" for i in range(10)]])
    old = Finalizer(store, catalog(1), Metrics(), FinalizeSettings(target_file_bytes=20_000))
    old.finalize_partition(P)
    store.delete(LAYOUT.plan(P))  # as a version without plans left it
    land(store, [["a1", "late"]])
    [m] = finalizer(store, shards=4).finalize_partition(P)
    assert m.shard == WHOLE and m.generation == 2 and m.total_events == 1 and m.duplicates_dropped == 1
    assert store.stat(LAYOUT.plan(P)) is None, "no plan written for a partition that has manifests"


def test_each_shard_commits_exactly_its_events_once() -> None:
    store = MemoryStore()
    envelopes = [[f"e{k}-{i}" for i in range(20)] for k in range(12)]
    envelopes += [[f"e3-{i}" for i in range(5)] + ["new-1"], ["e7-0", "e7-1", "new-1"]]  # retries via another FE
    land(store, envelopes)
    f = finalizer(store, shards=3)

    got = f.finalize_partition(P)

    assert sorted(m.shard for m in got) == list(Shard.all(3))
    rows = committed(store)
    ids = [e for _, e in rows]
    assert sorted(ids) == sorted({e for env in envelopes for e in env}), "every id, each exactly once"
    assert all(s.owns(e) for s, e in rows), "each shard holds only its ids"
    assert sum(m.duplicates_dropped for m in got) == 5 + 3
    state = read_partition(store, P)
    assert (state.shards, state.state, state.pending, state.committed_events) == (3, "complete", (), len(ids))
    assert store.stat(LAYOUT.success_marker(P)) is not None
    assert json.loads(store.read(LAYOUT.success_marker(P)))["first_manifest"] == LAYOUT.manifest(P, 1, Shard(0, 3))
    assert [n for n in store.names() if n.startswith("claims/")] == []


def test_success_waits_for_every_shard_and_staging_is_pending_until_all_consumed_it() -> None:
    store = MemoryStore()
    land(store, [[f"a{i}" for i in range(30)], [f"b{i}" for i in range(30)]])
    f = finalizer(store, shards=3)
    shards = f.shards(P)
    f.finalize_shard(P, shards[0])
    f.finalize_shard(P, shards[2])

    state = read_partition(store, P)
    assert store.stat(LAYOUT.success_marker(P)) is None, "shard 1 has not committed"
    assert state.state == "committed" and len(state.pending) == 2 and state.committed_shards == {0, 2}
    assert read_partition(store, P, shard=shards[0]).pending == ()
    assert len(read_partition(store, P, shard=shards[1]).pending) == 2

    f.finalize_shard(P, shards[1])
    assert store.stat(LAYOUT.success_marker(P)) is not None
    assert read_partition(store, P).state == "complete"
    assert sorted(e for _, e in committed(store)) == sorted([f"a{i}" for i in range(30)] + [f"b{i}" for i in range(30)])


def test_late_data_is_a_delta_in_every_shard_deduplicated_against_that_shard() -> None:
    store = MemoryStore()
    first = [f"x{i}" for i in range(40)]
    land(store, [first])
    f = finalizer(store, shards=2)
    f.finalize_partition(P)
    late = first[:10] + [f"late{i}" for i in range(10)]
    land(store, [late])

    deltas = f.finalize_partition(P)

    assert sorted((m.shard.index, m.generation) for m in deltas) == [(0, 2), (1, 2)]
    assert sum(m.total_events for m in deltas) == 10 and sum(m.duplicates_dropped for m in deltas) == 10
    assert sorted(e for _, e in committed(store)) == sorted(first + late[10:])
    assert read_partition(store, P).state == "complete"


def test_finalizers_that_disagree_on_the_shard_count_commit_each_event_once() -> None:
    store = MemoryStore()
    land(store, [[f"d{i}" for i in range(50)]])
    a, b = finalizer(store, shards=4, writer="a"), finalizer(store, shards=1, writer="b")
    assert len(a.shards(P)) == 4  # a fixed the plan, then stalled before any commit
    b.finalize_partition(P)  # b is configured for 1 shard: follows the plan
    assert sorted(m.shard.index for _, m in manifests(store)) == [0, 1, 2, 3]
    land(store, [["d1", "d2", "e-late"]])
    a.finalize_partition(P)
    assert all(m.shard.count == 4 for _, m in manifests(store))
    ids = [e for _, e in committed(store)]
    assert sorted(ids) == sorted([f"d{i}" for i in range(50)] + ["e-late"])


def test_a_rerun_of_a_shard_reuses_its_files_and_tokens_differ_between_shards() -> None:
    store = MemoryStore()
    land(store, [[f"r{i}" for i in range(60)], [f"q{i}" for i in range(60)]])
    f = finalizer(store, shards=2)
    [m0] = f.finalize_shard(P, Shard(0, 2))
    before = {n: store.read(n) for n in m0.file_names}
    # as if the commit had been lost: delete the manifest, run again with a fresh process
    store.delete(LAYOUT.manifest(P, 1, Shard(0, 2)))
    [again] = finalizer(store, shards=2).finalize_shard(P, Shard(0, 2))
    assert again.token == m0.token and {n: store.read(n) for n in again.file_names} == before
    [m1] = f.finalize_shard(P, Shard(1, 2))
    assert m1.token != m0.token and not set(m1.file_names) & set(m0.file_names)


def test_orphans_are_collected_per_shard() -> None:
    store = MemoryStore()
    land(store, [[f"o{i}" for i in range(20)]])
    fmt = BASE.category("ads_click").file_format
    stray0 = LAYOUT.data_file(P, 1, "deadbeefdeadbeef", 0, fmt, Shard(0, 2))
    stray1 = LAYOUT.data_file(P, 1, "deadbeefdeadbeef", 0, fmt, Shard(1, 2))
    racing = LAYOUT.data_file(P, 2, "deadbeefdeadbeef", 0, fmt, Shard(0, 2))  # a peer writing shard 0's next one
    for n in (stray0, stray1, racing):
        store.create_if_absent(n, b"left by a crashed finalizer")
    f = finalizer(store, shards=2)
    f.finalize_shard(P, f.shards(P)[0])
    assert store.stat(stray0) is None, "shard 0 committed g1 without it: an orphan"
    assert store.stat(stray1) is not None, "shard 1 has not committed g1: not shard 0's to judge"
    assert store.stat(racing) is not None, "generation 2 of shard 0 is not committed yet"
    f.finalize_shard(P, Shard(1, 2))
    assert store.stat(stray1) is None


def test_workers_claim_shards_so_a_peer_works_on_the_other_shards() -> None:
    store = MemoryStore()
    land(store, [[f"c{i}" for i in range(30)]])
    a, b = finalizer(store, shards=3, writer="a", claims=True), finalizer(store, shards=3, writer="b", claims=True)
    assert a.claims is not None
    held = a.claims.acquire(P, Shard(1, 3))
    assert held is not None and held.name == "claims/ads_click/2026/11/26/11/s01of03/e00000001"

    got = b.run_pass(["ads_click"], lambda p: True)
    assert sorted(m.shard.index for m in got) == [0, 2], "b skips the shard a holds"
    assert store.stat(LAYOUT.success_marker(P)) is None

    held.release()
    got = b.run_pass(["ads_click"], lambda p: True)
    assert [m.shard.index for m in got] == [1]
    assert store.stat(LAYOUT.success_marker(P)) is not None
    assert sorted(e for _, e in committed(store)) == sorted(f"c{i}" for i in range(30))
    assert b.run_pass(["ads_click"], lambda p: True) == []
    assert P in b._complete, "complete once every shard found nothing pending"
