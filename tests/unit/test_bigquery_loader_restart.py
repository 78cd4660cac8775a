"""A restarted loader reads again the manifests loaded before it started only if a batch its fresh path recovered
waits on their hour (known.py, "Memory"): at 83 envelopes/s a manifest holds about 300k names, and the fresh window
holds days of them. F4 still cleans the batches that wait, and the unread flags of the others are dropped unread."""

from __future__ import annotations

import datetime as dt

import pytest

from replicator.bigquery import names
from replicator.bigquery.loader import Loader
from replicator.layout import Partition
from tests.unit.test_bigquery_committed import FakeRunner, new_loader
from tests.unit.test_bigquery_fresh_hours import OPEN, World, world
from tests.unit.test_bigquery_loader_open_hours import held_names, passes

pytestmark = pytest.mark.unit


def manifest_reads(w: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The manifests read from now on, in order."""
    reads: list[str] = []
    read = w.store.read

    def counting(name: str) -> bytes:
        if "/_manifest-" in name:
            reads.append(name)
        return read(name)

    monkeypatch.setattr(w.store, "read", counting)
    return reads


def unread_left(loader: Loader) -> int:
    committed, _ = passes(loader)
    return sum(e.unread for d in committed._known._days.values() for e in d.manifests.values())


def loaded_by_another(w: World) -> None:
    """Another loader's committed path loads every manifest (72 h lookback: all of them)."""
    assert new_loader(w.store, FakeRunner(), w.client, w.clock, lookback=dt.timedelta(hours=72)).run() > 0


def test_a_restarted_loader_reads_only_the_manifests_of_hours_a_recovered_batch_waits_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = world(13)  # 13 complete hours before OPEN, loaded by no batch of this tier
    hour = OPEN - dt.timedelta(hours=20)  # yesterday's 17:00: not committed yet when the dead loader batches it
    dead = w.loader()
    obj = w.land(["waited-on"], hour + dt.timedelta(minutes=30))
    w.clock.now += dt.timedelta(minutes=2)
    dead.run_once()
    (bid,) = [bid for bid, b in passes(dead)[1]._batches.items() if obj in b.sources]
    assert len(w.fin.finalize_partition(Partition("ads_click", hour))) == 1
    loaded_by_another(w)  # the 13 hours and `hour`: 14 manifests of complete hours, loaded before the restart

    reads = manifest_reads(w, monkeypatch)
    restarted = w.loader()
    for _ in range(3):
        w.clock.now += dt.timedelta(minutes=1)
        restarted.run_once()
    assert reads == [w.fin.layout.manifest(Partition("ads_click", hour), 1)], "only the hour a batch waits on"
    assert unread_left(restarted) == 0 and held_names(w, restarted) == set()
    assert w.store.stat(names.fresh_record("core", bid)) is None, "F4 cleaned the recovered batch"
    assert w.store.stat(names.fresh_object("core", obj)) is None


def test_a_restarted_loader_without_waiting_batches_reads_no_loaded_manifest(monkeypatch: pytest.MonkeyPatch) -> None:
    w = world(13)
    loaded_by_another(w)
    reads = manifest_reads(w, monkeypatch)
    restarted = w.loader()
    for _ in range(2):
        w.clock.now += dt.timedelta(minutes=1)
        restarted.run_once()
    assert reads == [], "no batch waits on a complete hour: nothing to hand over"
    assert unread_left(restarted) == 0 and held_names(w, restarted) == set()
