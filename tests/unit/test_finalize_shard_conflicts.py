"""A partition whose manifests disagree with its shard plan (docs/design.md, "Upgrades"; docs/deploy.md,
"Upgrades and shard plan conflicts").

How it happens: a rolling upgrade that ships the sharding code together with a catalog that already sets
``finalize_shards: 2`` lets an old-version worker, still running, finalize a partition that a new worker planned in
shards. The old version does not know ``_plan.json`` and does not see ``_manifest-sKKofNN-*`` names, so it commits
the partition whole as ``_manifest-g0001.json``. Its output is exactly what this version writes for ``WHOLE`` (the
unsharded path is byte-identical), so ``finalize_shard(P, WHOLE)`` with this version's guard switched off stands in
for it here (``old_worker_commits_whole``).

What must hold: no finalizer of this version commits on top of such a manifest (that would commit every event a
second time, G2); the refusal is loud (a failure, the ``finalize_errors{kind="PlanError"}`` metric, a log line) and
``logpipe partitions`` names the partition; the documented repair (delete ``_plan.json`` when only whole manifests
exist) lets the partition finish whole, each event once.
"""

from __future__ import annotations

from collections import Counter

import pytest

from replicator.layout import WHOLE, Shard
from replicator.plan import PlanError, check_manifests, resolve_shards
from replicator.scan import read_partition
from replicator.store import MemoryStore
from tests.unit.test_finalize_shards import LAYOUT, NOW, P, committed, finalizer, land

pytestmark = pytest.mark.unit


def old_worker_commits_whole(store: MemoryStore) -> None:
    """What a worker of a version without plans does: commit every pending staging object whole, blind to plans."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("replicator.scan.check_manifests", lambda *a: None)
        finalizer(store, shards=1, writer="old").finalize_shard(P, WHOLE)


def _errors(f: object) -> float:
    metric = f.metrics.finalize_errors.labels("PlanError")  # type: ignore[attr-defined]
    return float(metric._value.get())


def test_an_old_worker_committing_a_planned_partition_whole_is_refused_not_duplicated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    ids = [f"u{i}" for i in range(40)]
    land(store, [ids[:20], ids[20:]])
    # A new worker (catalog finalize_shards: 2) reaches the partition first and fixes its plan...
    assert resolve_shards(store, LAYOUT, P, 2, "new", NOW) == 2
    # ...while an old worker (plans and shard names unknown to it) commits the partition whole.
    old_worker_commits_whole(store)

    new = finalizer(store, shards=2, writer="new")
    assert new.run_pass(["ads_click"], lambda p: True) == []
    assert new.failures == 1 and _errors(new) == 1
    assert "refusing to commit more" in caplog.text and "_manifest-g0001.json" in caplog.text

    counts = Counter(e for _, e in committed(store))
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}, "each event once: the old worker's"
    assert read_partition(store, P).foreign == [LAYOUT.manifest(P, 1)]


def test_a_shard_refuses_a_foreign_manifest_that_appeared_while_it_worked() -> None:
    """The guard is in each generation's listing, not only in the plan lookup at the start of a partition: the old
    worker may commit between a new worker's ``shards()`` and its shard's commit."""
    store = MemoryStore()
    land(store, [[f"v{i}" for i in range(30)]])
    new = finalizer(store, shards=2, writer="new")
    shards = new.shards(P)
    assert shards == Shard.all(2)
    old_worker_commits_whole(store)
    with pytest.raises(PlanError, match="refusing to commit more"):
        new.finalize_shard(P, shards[0])
    assert [s for s, _ in committed(store)] == [WHOLE] * 30


def test_an_old_worker_after_one_shard_committed_stops_the_other_shards() -> None:
    """Shard 0 committed, then the old worker committed everything whole: shard 0's events are now in two manifests
    (this version cannot prevent what an old worker does after it), but nothing is added, and the conflict is loud."""
    store = MemoryStore()
    ids = [f"w{i}" for i in range(40)]
    land(store, [ids])
    new = finalizer(store, shards=2, writer="new")
    new.finalize_shard(P, Shard(0, 2))
    old_worker_commits_whole(store)
    before = Counter(e for _, e in committed(store))
    new.run_pass(["ads_click"], lambda p: True)
    assert new.failures == 1 and _errors(new) == 1
    assert Counter(e for _, e in committed(store)) == before, "shard 1 committed nothing"
    assert read_partition(store, P).foreign == [LAYOUT.manifest(P, 1)]


def test_the_documented_repair_lets_the_partition_finish_whole() -> None:
    store = MemoryStore()
    ids = [f"x{i}" for i in range(20)]
    land(store, [ids[:10]])
    resolve_shards(store, LAYOUT, P, 2, "new", NOW)
    old_worker_commits_whole(store)
    store.delete(LAYOUT.plan(P))  # docs/deploy.md: only whole manifests exist, so the plan goes
    land(store, [ids[10:]])  # late data after the repair
    new = finalizer(store, shards=2, writer="new")
    new.run_pass(["ads_click"], lambda p: True)
    assert new.failures == 0
    counts = Counter(e for _, e in committed(store))
    assert sorted(counts) == sorted(ids) and set(counts.values()) == {1}
    assert {s for s, _ in committed(store)} == {WHOLE}


def test_check_manifests_names_only_manifests_of_another_count() -> None:
    d = "logs/ads_click/2026/11/26/11/"
    names = [d + "_plan.json", d + "_SUCCESS", d + "_manifest-s00of02-g0001.json", d + "part-g0001-abc-00000.avro"]
    check_manifests(P, 2, names)
    with pytest.raises(PlanError, match=r"_manifest-g0002\.json"):
        check_manifests(P, 2, [*names, d + "_manifest-g0002.json"])
    with pytest.raises(PlanError, match="s00of02"):
        check_manifests(P, 1, names)
    with pytest.raises(PlanError, match="s01of03"):
        check_manifests(P, 2, [*names, d + "_manifest-s01of03-g0001.json"])
