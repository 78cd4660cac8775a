"""The loader keeps the source names of the hours the fresh path still lists only (G4): once an hour is complete
(``_SUCCESS``) and its manifests are loaded, their names are handed to the fresh pass once (``done_sources``), whose
batches note what they saw, and then dropped (known.py, "Memory"). F4 still cleans the batches of hours that
completed, never a batch before it is loaded and every one of its objects is committed and loaded, and a restarted
loader hands over the names of manifests loaded before it started a bounded number at a time, newest first."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from replicator.bigquery import known as known_module
from replicator.bigquery import names
from replicator.bigquery.committed import CommittedLoader
from replicator.bigquery.fresh import FreshLoader
from replicator.bigquery.loader import Loader
from replicator.errors import StoreError
from replicator.layout import Partition
from replicator.store import ObjectInfo
from tests.unit.test_bigquery_committed import FakeRunner, new_loader
from tests.unit.test_bigquery_fresh_hours import LAYOUT, OPEN, FreshPendingRunner, World, horizon_hours, world
from tests.unit.test_bigquery_loader_memory import held_strings

pytestmark = pytest.mark.unit


def passes(loader: Loader) -> tuple[CommittedLoader, FreshLoader]:
    (pair,) = loader._passes
    return pair


def held_names(w: World, loader: Loader) -> set[str]:
    """The staging names the committed path of ``loader`` keeps alive, whatever its layout."""
    return {s for s in held_strings(passes(loader)[0], (w.store, w.runner, w.client)) if s.startswith("staging/")}


def hour_objects(w: World, hour: dt.datetime) -> set[str]:
    return {n for n in w.store.names() if n.startswith(LAYOUT.staging_dir(Partition("ads_click", hour)))}


def fresh_files(w: World) -> set[str]:
    """Batch records, markers and Avro files under ``bq/fresh/``."""
    return {n for n in w.store.names() if n.startswith("bq/fresh/core/")}


def avro(src: str) -> str:
    return names.fresh_object("core", src)


def test_once_hours_are_complete_only_the_open_hours_names_are_kept_and_f4_still_cleans() -> None:
    w = world(horizon_hours())  # 61 hours of the fresh window's days committed, 2 objects each, and OPEN
    behind = OPEN - dt.timedelta(hours=1)
    w.store.delete(LAYOUT.success_marker(Partition("ads_click", behind)))  # a finalizer died before its _SUCCESS
    loader = w.loader()
    loader.run_once()
    committed, _ = passes(loader)
    assert len(w.complete_staging()) == 2 * 60
    assert held_names(w, loader) == hour_objects(w, behind), "the hour F2 still lists: its names exclude its objects"
    assert committed.committed_sources == committed.done_sources == hour_objects(w, behind)
    assert w.fresh_uris() == {f"gs://b/{avro(n)}" for n in hour_objects(w, OPEN)}, "no committed object loaded"
    (batch_file,) = {n for n in fresh_files(w) if n.endswith(".json")}

    w.fin.finalize_partition(Partition("ads_click", behind))  # the next finalizer pass writes the _SUCCESS
    w.clock.now = OPEN + dt.timedelta(hours=1, minutes=15)  # and OPEN closed and was committed
    assert len(w.fin.finalize_partition(Partition("ads_click", OPEN))) == 1
    loader.run_once()
    assert held_names(w, loader) == set() and committed.committed_sources == frozenset()
    assert batch_file not in w.store.names() and not fresh_files(w), "F4 cleaned OPEN's batch"


@pytest.mark.parametrize("success_late", [False, True])
def test_a_fresh_pass_that_fails_hands_nothing_over(monkeypatch: pytest.MonkeyPatch, success_late: bool) -> None:
    """Names are dropped only after a fresh pass finished with them, whether the hour was complete when its manifest
    was loaded or completes only afterwards (``success_late``: the finalizer died before writing ``_SUCCESS``)."""
    w = world(13)
    loader = w.loader()
    loader.run_once()  # OPEN's batch loaded
    w.clock.now = OPEN + dt.timedelta(hours=1, minutes=15)
    assert len(w.fin.finalize_partition(Partition("ads_click", OPEN))) == 1
    if success_late:
        w.store.delete(LAYOUT.success_marker(Partition("ads_click", OPEN)))
    listing = w.store.list

    def failing(prefix: str, *, start_offset: str = "") -> Iterator[ObjectInfo]:
        if prefix.startswith("bq/fresh/") or prefix.startswith("staging/"):
            raise StoreError("list", prefix, "unavailable", transient=True)
        return listing(prefix, start_offset=start_offset)

    monkeypatch.setattr(w.store, "list", failing)
    with pytest.raises(StoreError):
        loader.run_once()  # the committed pass loads OPEN's manifest; the fresh pass fails before F4
    assert held_names(w, loader) == hour_objects(w, OPEN)
    monkeypatch.setattr(w.store, "list", listing)
    w.fin.finalize_partition(Partition("ads_click", OPEN))  # the next finalizer pass writes any missing _SUCCESS
    w.clock.now += dt.timedelta(minutes=1)
    loader.run_once()  # the hour is complete: its loaded manifest's names are handed over now
    assert not fresh_files(w), "F4 cleaned OPEN's batch"
    assert held_names(w, loader) == set()


def test_a_batch_is_cleaned_only_once_loaded_and_every_object_committed_and_loaded() -> None:
    """Two traps for a criterion coarser than the objects' names, while those names are handed over and dropped: an
    object landing into an hour after its generation 1 (the hour is complete and its only known manifest loaded, but
    the object is in none), and a batch whose fresh load is still pending when its objects' manifest is loaded."""
    w = world(13)
    runner = FreshPendingRunner()
    loader = w.loader(runner)
    committed, fresh = passes(loader)
    hour = OPEN - dt.timedelta(hours=14)  # 23:00 yesterday: not committed yet, open as far as the loader knows
    first = w.land(["x-1"], hour + dt.timedelta(minutes=50))
    w.clock.now += dt.timedelta(minutes=2)
    loader.run_once()
    assert f"gs://b/{avro(first)}" in {u for s in runner.specs if s.kind == "fresh" for u in s.uris}

    # The race: this pass's committed listing ran before the finalizer committed the hour (generation 1 + _SUCCESS),
    # and an object landed into it afterwards; the fresh listing still sees the hour open and batches the object.
    committed.run()
    assert len(w.fin.finalize_partition(Partition("ads_click", hour))) == 1
    late = w.land(["x-2"], hour + dt.timedelta(minutes=55))
    w.clock.now += dt.timedelta(minutes=2)
    runner.pending = True  # and the late batch's fresh load stays pending
    fresh.run(committed.committed_sources, committed.done_sources, committed.complete_hours)
    assert late in {s for b in fresh._batches.values() for s in b.sources}

    w.clock.now += dt.timedelta(minutes=1)
    loader.run_once()  # generation 1 loaded, its names handed over, then dropped
    assert held_names(w, loader) == set(), "the hour is complete and generation 1 handed over"
    assert not store_has(w, avro(first)), "x-1's batch: loaded, and its object loaded by generation 1: cleaned"
    assert store_has(w, avro(late)), "the late batch: not loaded, and its object in no manifest"

    assert [m.generation for m in w.fin.finalize_partition(Partition("ads_click", hour))] == [2]
    w.clock.now += dt.timedelta(minutes=1)
    loader.run_once()  # generation 2 (the late object) loaded, its names handed over, then dropped
    assert held_names(w, loader) == set()
    assert store_has(w, avro(late)) and store_has(w, names.fresh_record("core", one_batch(fresh, late))), (
        "every object committed and loaded, but the batch not loaded: kept"
    )

    runner.pending = False
    w.clock.now += dt.timedelta(minutes=1)
    bid = one_batch(fresh, late)
    loader.run_once()  # F1 loads it; F4 remembers that its object was seen loaded
    assert f"gs://b/{avro(late)}" in {u for s in runner.specs if s.kind == "fresh" for u in s.uris}
    assert not store_has(w, avro(late)) and not store_has(w, names.fresh_record("core", bid)), "then cleaned"


def test_a_batch_over_two_hours_is_cleaned_once_the_second_is_loaded_though_the_first_was_dropped() -> None:
    w = world(13)
    loader = w.loader()
    h1, h2 = OPEN - dt.timedelta(hours=15), OPEN - dt.timedelta(hours=14)  # yesterday's 22:00 and 23:00
    a, b = w.land(["y-1"], h1 + dt.timedelta(minutes=5)), w.land(["y-2"], h2 + dt.timedelta(minutes=5))
    w.clock.now += dt.timedelta(minutes=2)
    loader.run_once()
    _, fresh = passes(loader)
    bid = one_batch(fresh, a)
    assert bid == one_batch(fresh, b) and bid in fresh._loaded, "landed in one slot: one batch, loaded"
    assert len(w.fin.finalize_partition(Partition("ads_click", h1))) == 1
    w.clock.now += dt.timedelta(minutes=1)
    loader.run_once()
    assert held_names(w, loader) == set(), "the first hour's names handed over and dropped"
    assert store_has(w, avro(a)) and store_has(w, avro(b)), "the second hour is not committed: kept"
    assert len(w.fin.finalize_partition(Partition("ads_click", h2))) == 1
    w.clock.now += dt.timedelta(minutes=1)
    loader.run_once()
    assert not store_has(w, avro(a)) and not store_has(w, avro(b)), "cleaned"
    assert not store_has(w, names.fresh_record("core", bid)) and held_names(w, loader) == set()


def one_batch(fresh: FreshLoader, src: str) -> str:
    (bid,) = [bid for bid, b in fresh._batches.items() if src in b.sources]
    return bid


def store_has(w: World, name: str) -> bool:
    return w.store.stat(name) is not None


def test_a_restarted_loader_hands_over_manifests_loaded_before_it_started_bounded_newest_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loader died with loaded batches of three hours not cleaned; the hours completed and another loader's
    committed path loaded them. The restarted loader reads those manifests again for F4, one a pass here (the room,
    ``_HANDOVER_SOURCES``, is one name, and a manifest is never split), newest hour first."""
    monkeypatch.setattr(known_module, "_HANDOVER_SOURCES", 1)
    w = world(0)
    hours = [OPEN - dt.timedelta(hours=back) for back in (3, 2, 1)]
    dead = w.loader()
    for hour in hours:  # one envelope per hour, each landed in its own time slot: one batch each
        w.land([f"at-{hour:%H}"], hour + dt.timedelta(minutes=30))
        w.clock.now += dt.timedelta(minutes=2)
        dead.run_once()
    records = {n for n in fresh_files(w) if n.endswith(".json")}
    assert len(records) == 4, "the three hours' batches and OPEN's"
    for hour in hours:
        assert len(w.fin.finalize_partition(Partition("ads_click", hour))) == 1
    other = new_loader(w.store, FakeRunner(), w.client, w.clock, lookback=dt.timedelta(hours=72))
    assert other.run() == 3

    restarted = w.loader()
    objects = {h: one_object(w, h) for h in hours}
    for k, hour in enumerate(reversed(hours)):  # read after the fresh pass, for the next pass's F4
        w.clock.now += dt.timedelta(minutes=1)
        restarted.run_once()
        assert {h for h in hours if not store_has(w, avro(objects[h]))} == set(hours[3 - k :]), "none before its turn"
        assert held_names(w, restarted) == {objects[hour]}, "one manifest a pass, the newest hour first"
    w.clock.now += dt.timedelta(minutes=1)
    restarted.run_once()
    assert {h for h in hours if not store_has(w, avro(objects[h]))} == set(hours)
    assert held_names(w, restarted) == set()
    assert len({n for n in fresh_files(w) if n.endswith(".json")}) == 1, "OPEN's batch is left"


def one_object(w: World, hour: dt.datetime) -> str:
    (obj,) = hour_objects(w, hour)
    return obj
