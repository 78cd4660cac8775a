"""The loader's memory is bounded by what it needs (G4): source names are kept for the fresh window's days only (the
only days the fresh path looks them up), manifests of older days are remembered without them and read again only to
be loaded, a catch-up pass holds a bounded number of loaded manifests, and the fresh path forgets batches of days it
no longer lists. Plus the figures of docs/bigquery.md ("Memory"): ``python tests/unit/test_bigquery_loader_memory.py``.
"""

from __future__ import annotations

import datetime as dt
import gc
import tracemalloc
import types
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from replicator.bigquery import committed as committed_module
from replicator.bigquery import names
from replicator.bigquery.committed import CommittedLoader, Target
from replicator.bigquery.errors import LoadPending
from replicator.bigquery.fresh import FreshLoader
from replicator.bigquery.jobs import LoadOutcome, LoadSpec
from replicator.bigquery.loader import Loader, LoaderConfig
from replicator.bigquery.metrics import LoaderMetrics
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Layout, Partition, parse_partition_dir
from replicator.manifest import DataFile, Manifest
from replicator.metrics import Metrics
from replicator.store import Created, MemoryStore
from tests.unit.test_bigquery_committed import (
    CAT,
    NOW,
    OLD,
    Clock,
    FakeClient,
    FakeRunner,
    ListingStore,
    land,
    logs_days_listed,
    new_loader,
    staging,
)

pytestmark = pytest.mark.unit
P = Partition("ads_click", NOW.replace(minute=0))
AVRO, CREATED = CAT.category("ads_click").file_format, "2026-11-26T00:00:00Z"


class ReadingStore(ListingStore):  # records every object read, besides every prefix listed
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.reads: list[str] = []

    def read(self, name: str) -> bytes:
        self.reads.append(name)
        return super().read(name)

    def manifest_reads(self) -> list[str]:
        return [r for r in self.reads if r.startswith("logs/")]


def world(clock: Clock) -> tuple[ReadingStore, Lander, Finalizer]:
    store = ReadingStore(clock)
    lander = Lander(store, [c.name for c in CAT.categories], Metrics())
    return store, lander, Finalizer(store, CAT, Metrics(), FinalizeSettings(writer="test"), clock=clock)


def held_strings(root: object, skip: tuple[object, ...]) -> set[str]:
    """Every string ``root`` keeps alive, whatever its layout (not through ``skip``, classes, modules, functions)."""
    seen, out, stack = {id(o) for o in skip}, set(), [root]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if isinstance(o, str):
            out.add(o)
        elif not isinstance(o, type | types.ModuleType | types.FunctionType | types.BuiltinFunctionType):
            stack.extend(gc.get_referents(o))
    return out


def test_the_loader_holds_no_source_name_of_a_day_before_the_fresh_window() -> None:
    clock = Clock(NOW)
    store, lander, fin = world(clock)
    for hours in range(60, 180, 7):  # 18 partitions between 2.5 and 7.5 days old: late data, all committed
        land(lander, [f"old-{hours}"], NOW - dt.timedelta(hours=hours))
        fin.finalize_partition(Partition.of("ads_click", NOW - dt.timedelta(hours=hours)))
    land(lander, ["new"])
    fin.finalize_partition(P)
    runner, client = FakeRunner(), FakeClient()
    loader = new_loader(store, runner, client, clock)  # backfill 192 h, fresh horizon 48 h (the defaults)
    assert loader.run() == 19
    fresh_from = (NOW - dt.timedelta(hours=48)).date()
    in_window = {n for n in store.names() if (p := parse_partition_dir(n, "staging")) and p.hour.date() >= fresh_from}
    assert staging(store, NOW) < in_window and len(in_window) < 19
    held = {s for s in held_strings(loader, (store, runner, client)) if s.startswith("staging/")}
    assert held == in_window, "source names of the fresh window's days only"
    assert loader.committed_sources == loader.done_sources == in_window


def test_a_day_leaving_the_fresh_window_keeps_its_manifests_and_a_late_delta_is_loaded_once() -> None:
    clock = Clock(NOW)
    store, lander, fin = world(clock)
    runner, client = FakeRunner(), FakeClient()
    land(lander, ["a", "b"])
    fin.finalize_partition(P)
    loader = new_loader(store, runner, client, clock)
    assert loader.run() == 1 and loader.committed_sources == staging(store, NOW)

    clock.now = NOW + dt.timedelta(days=3)  # NOW's day: before the fresh window, inside the backfill window
    store.listed.clear()
    store.reads.clear()
    assert loader.run() == 0 and len(runner.specs) == 1, "remembered as done: not loaded again"
    assert f"{NOW:%Y/%m/%d}/" in logs_days_listed(store), "the backfill pass listed the day again"
    assert store.manifest_reads() == [], "nor read again"
    assert loader.committed_sources == loader.done_sources == frozenset()

    land(lander, ["late"], NOW)  # e.g. a spool replayed after an outage: a delta into the old partition
    late = staging(store, NOW) - {s for d in client.deleted for s in d}
    fin.finalize_partition(P)
    store.reads.clear()
    clock.now += dt.timedelta(hours=1)  # the next backfill pass
    assert loader.run() == 1 and "-g0002-" in runner.specs[1].job_base
    assert client.deleted[-1] == sorted(late), "C3 has the sources of the manifest it read to load"
    assert store.manifest_reads() == [Layout().manifest(P, 2)], "read once, to be loaded"
    assert loader.committed_sources == frozenset()

    clock.now = NOW + dt.timedelta(minutes=5)  # the clock steps back: the day is in the fresh window again
    assert loader.run() == 0 and len(runner.specs) == 2
    loader.read_unread()  # driven alone: no fresh path to say what it waits on, so every one is read
    assert loader.committed_sources == loader.done_sources == staging(store, NOW), "its manifests are read again"


class PendingRunner(FakeRunner):
    def __init__(self, pending: int) -> None:
        super().__init__()
        self.pending = pending

    def load(self, spec: LoadSpec) -> LoadOutcome:
        if self.pending:
            self.pending -= 1
            self.specs.append(spec)
            raise LoadPending("BigQuery unavailable")
        return super().load(spec)


def test_an_old_manifest_whose_load_is_pending_is_read_again_and_loaded_once() -> None:
    clock = Clock(NOW)
    store, lander, fin = world(clock)
    land(lander, ["old"], OLD)
    fin.finalize_partition(Partition.of("ads_click", OLD))
    store.reads.clear()
    runner, client = PendingRunner(pending=2), FakeClient()
    loader = new_loader(store, runner, client, clock)
    for minutes in (0, 1):  # the second pass lists only the lookback: the remembered entry is what is retried
        clock.now = NOW + dt.timedelta(minutes=minutes)
        assert loader.run() == 0
    clock.now += dt.timedelta(minutes=1)
    assert loader.run() == 1 and len({s.job_base for s in runner.specs}) == 1
    assert len(store.manifest_reads()) == 3, "one read per load attempt; nothing cached in between"
    assert client.deleted == [sorted(staging(store, OLD))]
    clock.now += dt.timedelta(minutes=1)
    assert loader.run() == 0 and len(runner.specs) == 3


class ThirdDeleteFails(FakeClient):
    calls = 0

    def query(self, sql: str, job_config: Any) -> Any:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("concurrent update")
        return super().query(sql, job_config)


def test_a_catch_up_pass_finishes_its_loads_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(committed_module, "_FLUSH_SOURCES", 2)
    clock = Clock(NOW)
    store, lander, fin = world(clock)
    for hours in (80, 90, 100):
        land(lander, [f"e{hours}-1"], NOW - dt.timedelta(hours=hours))
        land(lander, [f"e{hours}-2"], NOW - dt.timedelta(hours=hours))
        fin.finalize_partition(Partition.of("ads_click", NOW - dt.timedelta(hours=hours)))
    runner, client = FakeRunner(), ThirdDeleteFails()
    loader = new_loader(store, runner, client, clock)
    assert loader.run() == 2, "C3 and C4 after each chunk: the first two are finished"
    assert [len(d) for d in client.deleted] == [2, 2]
    assert len([n for n in store.names() if n.startswith("bq/committed/")]) == 2
    assert loader.run() == 1 and len(runner.specs) == 4, "the third is loaded again (a 409) and finished"


def fresh_loader(store: MemoryStore, runner: FakeRunner, clock: Clock) -> FreshLoader:
    return FreshLoader(
        store=store, runner=runner, metrics=LoaderMetrics(), target=Target("p", "ds", "b"), tier="core",  # type: ignore[arg-type]
        categories=CAT.categories_in("core"), horizon=dt.timedelta(hours=48), clock=clock,
    )  # fmt: skip


def test_the_fresh_path_forgets_batches_of_days_it_no_longer_lists() -> None:
    """A pending batch found after a long outage is not loaded (its rows are older than the view's horizon, and the
    committed path no longer knows which of its objects are committed), and a loaded batch whose objects never got a
    loaded manifest (a commit given up) is not kept for the life of the process."""
    clock = Clock(NOW)
    store, lander, _ = world(clock)
    runner = PendingRunner(pending=0)
    alive = fresh_loader(store, runner, clock)
    land(lander, ["p"])
    clock.now = NOW + dt.timedelta(minutes=2)
    assert alive.run(frozenset(), frozenset()) == 1, "batch A: loaded"
    land(lander, ["q"])
    clock.now += dt.timedelta(minutes=2)
    runner.pending = 1
    assert alive.run(frozenset(), frozenset()) == 0, "batch B: pending, and then BigQuery and the process are gone"
    assert len(alive._batches) == 2 and len(runner.specs) == 2

    clock.now = NOW + dt.timedelta(days=3)  # NOW's day is before the fresh window
    restarted = fresh_loader(store, runner, clock)
    assert restarted.run(frozenset(), frozenset()) == 0 and alive.run(frozenset(), frozenset()) == 0
    assert len(runner.specs) == 2, "B is not resumed: its rows would never show"
    for loader in (restarted, alive):
        assert loader._batches == {} and loader._loaded == set() and loader._conv.converted == set()
    assert len([n for n in store.names() if n.startswith("bq/fresh/core/") and n.endswith(".json")]) == 2, (
        "their files are left to the lifecycle rule"
    )


def test_the_loader_gives_the_committed_path_the_fresh_horizon() -> None:
    loader = Loader(LoaderConfig(project="p", bucket="b", horizon_hours=96), CAT, FakeClient(), MemoryStore())
    for committed, fresh in loader._passes:
        assert committed._fresh_horizon == fresh._horizon == dt.timedelta(hours=96)


class NullClient:  # for the figures below: keeps nothing, unlike FakeClient and FakeRunner
    def query(self, sql: str, job_config: Any) -> NullClient:
        return self

    def result(self) -> None:
        return None


class NullRunner:
    def load(self, spec: LoadSpec) -> LoadOutcome:
        return LoadOutcome(names.job_id(spec.job_base, 0), 1, True)


class MarkerlessStore(MemoryStore):
    """Drops the loader's marker writes, so that tracemalloc counts the loader's memory, not the store's."""

    def create_if_absent(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
    ) -> Created:
        return Created(True, "", 0) if name.startswith("bq/") else super().create_if_absent(name, data, metadata)


def remembered_bytes(
    manifests: int, sources: int, *, days_old: int, done: bool, complete: bool = False
) -> tuple[float, float]:
    """(retained, peak) bytes per manifest over one pass of a fresh loader process, for ``manifests`` synthetic
    manifests of ``sources`` sources each in the partitions of one UTC day ``days_old`` days before NOW.
    ``done``: their ``.loaded`` markers exist (a restart), else the pass loads them all (a catch-up). ``complete``:
    their hours have ``_SUCCESS``, and each pass is followed by the fresh pass's ``handed_over`` (as in
    ``Loader.run_once``), passes running until every loaded manifest's names were handed over."""
    store, layout = MarkerlessStore(clock=lambda: NOW), Layout()
    day = (NOW - dt.timedelta(days=days_old)).replace(hour=0, minute=0)
    for i in range(manifests):
        p, gen = Partition("ads_click", day + dt.timedelta(hours=i % 24)), i // 24 + 1
        srcs = tuple(layout.staging_object(p, str(uuid.uuid4())) for _ in range(sources))
        files = (DataFile(layout.data_file(p, gen, "t", 0, AVRO), 1, 1, "A"),)
        m = Manifest("ads_click", p.hour, gen, uuid.uuid4().hex[:16], files, sources, None, None, srcs, CREATED, "b")
        store.create_if_absent(layout.manifest(p, gen), m.to_json())
        if complete:
            store.create_if_absent(layout.success_marker(p), b"")
        if done:
            MemoryStore.create_if_absent(store, names.committed_marker(p, gen), b"")
    loader = CommittedLoader(
        store=store, client=NullClient(), runner=NullRunner(), metrics=LoaderMetrics(), target=Target("p", "ds", "b"),  # type: ignore[arg-type]
        tier="core", categories=CAT.categories_in("core"), lookback=dt.timedelta(hours=72), clock=lambda: NOW,
    )  # fmt: skip
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    assert loader.run() == (0 if done else manifests)
    loader.read_unread()  # as ``Loader.run_once`` does, without a fresh path (every one is read)
    _ = loader.committed_sources, loader.done_sources  # built every pass by the fresh path (and cached)
    del _
    while complete:
        loader.handed_over(loader.done_sources)
        if not any(e.unread for d in loader._known._days.values() for e in d.manifests.values()):
            break
        assert loader.run() == 0
        loader.read_unread()
    gc.collect()
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return (retained - base) / manifests, (peak - base) / manifests


@pytest.mark.parametrize("done", [True, False])
def test_a_manifest_before_the_fresh_window_costs_a_few_hundred_bytes(done: bool) -> None:
    retained, _ = remembered_bytes(240, 100, days_old=4, done=done)
    assert retained < 1_000, f"{retained:.0f} B per manifest of 100 sources"


@pytest.mark.parametrize("done", [True, False])
def test_a_handed_over_manifest_of_a_complete_hour_in_the_fresh_window_costs_a_few_hundred_bytes(done: bool) -> None:
    retained, _ = remembered_bytes(240, 100, days_old=1, done=done, complete=True)
    assert retained < 1_000, f"{retained:.0f} B per manifest of 100 sources"


if __name__ == "__main__":
    cases = ((4, False, "before the fresh window"), (1, True, "in the fresh window, complete hours, handed over"))
    for days_old, complete, label in (*cases, (0, False, "in the fresh window, open hours")):
        for done in (True, False):
            r, pk = remembered_bytes(10_000, 100, days_old=days_old, done=done, complete=complete)
            case = "restart (loaded before)" if done else "catch-up (loaded by the pass)"
            print(f"10,000 manifests x 100 sources, {label}, {case}: retained {r:,.0f} B, peak {pk:,.0f} B each")
