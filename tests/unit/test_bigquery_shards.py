"""BigQuery loading of partitions finalized in shards (``layout.Shard``), through the loader on the in-memory store,
with a fake BigQuery that keeps the committed and fresh tables' rows and executes C3's DELETE statement (the same for
whole and sharded partitions) by its meaning (the integration test test_bigquery_sharded_loading.py runs the same
statement on the emulator). It also executes the delete by source alone that C3 once ran for whole partitions, so a
return to it shows as an event missing from the view (test_bigquery_c3_earlier_generation.py), not as a failed
delete.

What must hold: every shard's generation is loaded once, under its own job id and ``.loaded`` marker (shards number
their generations independently); the view (committed rows, plus fresh rows whose event is not committed) shows every
landed event exactly once at every step, so a shard's C3 never deletes the fresh rows of another shard's events, and
the fresh path keeps loading a source until every shard committed it; F4 cleans a batch only once every shard's
manifest listing its objects is loaded; unsharded partitions keep their names. And the demo's reconciliation reads
every shard's manifests.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from google.cloud import bigquery

from replicator import records
from replicator.bigquery import fresh_rows, known, names
from replicator.bigquery.committed import CommittedLoader, fresh_delete_sql
from replicator.bigquery.errors import LoadPending
from replicator.bigquery.jobs import LoadOutcome, LoadSpec
from replicator.bigquery.loader import Loader, LoaderConfig
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import WHOLE, Partition, Shard, shard_of
from replicator.metrics import Metrics
from replicator.store import MemoryStore
from replicator.synth import make_envelope
from service.catalog import Catalog
from service.demo.reconcile import read_committed
from tests.unit.test_bigquery_committed import CAT, NOW, Clock, new_loader

pytestmark = pytest.mark.unit
P = Partition("ads_click", NOW.replace(minute=0))
TARGET = "p.ds"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def sharded_catalog(shards: int) -> Catalog:
    cats = tuple(
        c.model_copy(update={"finalize_shards": shards}) if c.name == "ads_click" else c for c in CAT.categories
    )
    return CAT.model_copy(update={"categories": cats})


def _time(v: Any) -> dt.datetime:
    return v if isinstance(v, dt.datetime) else _EPOCH + dt.timedelta(microseconds=int(v))


class FakeBigQuery:
    """The load runner and the query client: loads append the files' rows to the committed or fresh table; queries
    are C3's DELETE statements, executed by their meaning. ``pending``: job-base fragments whose loads are pending."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.specs: list[LoadSpec] = []
        self.committed: dict[str, list[tuple[str, dt.datetime]]] = {}  # category -> (event_id, event_time)
        self.fresh: list[tuple[str, str, str, dt.datetime]] = []  # (category, source, event_id, event_time)
        self.statements: list[str] = []
        self.pending: set[str] = set()
        self._done: set[str] = set()

    def load(self, spec: LoadSpec) -> LoadOutcome:
        self.specs.append(spec)
        if any(frag in spec.job_base for frag in self.pending):
            raise LoadPending("BigQuery unavailable")
        if spec.job_base in self._done:  # the same job id again: a 409, nothing appended
            return LoadOutcome(names.job_id(spec.job_base, 0), 1, False)
        self._done.add(spec.job_base)
        for uri in spec.uris:
            data = self.store.read(uri.removeprefix("gs://b/"))
            if spec.kind == "commit":
                category = spec.table.removeprefix(f"{TARGET}.").removesuffix(names.COMMITTED_SUFFIX)
                rows = records.decode_rows(data, CAT.category(category))
                self.committed.setdefault(category, []).extend((r["event_id"], _time(r["event_time"])) for r in rows)
            else:
                self.fresh.extend(
                    (r["category"], r["source"], r["event_id"], _time(r["event_time"])) for r in fresh_rows.decode(data)
                )
        return LoadOutcome(names.job_id(spec.job_base, 0), 1, True)

    def query(self, sql: str, job_config: Any) -> FakeBigQuery:
        params: dict[str, Any] = {
            q.name: q.values if isinstance(q, bigquery.ArrayQueryParameter) else q.value
            for q in job_config.query_parameters
        }
        sources = set(params["sources"])
        self.statements.append(sql)
        fresh = f"{TARGET}.{names.fresh_table('core')}"
        if sql == f"DELETE FROM `{fresh}` WHERE source IN UNNEST(@sources)":  # C3 by source alone: not issued any more
            self.fresh = [r for r in self.fresh if r[1] not in sources]
            return self
        by_sql = {fresh_delete_sql(fresh, f"{TARGET}.{names.committed_table(c.name)}"): c.name for c in CAT.categories}
        category = by_sql[sql]  # any other statement: KeyError
        start, end = params["start"], params["end"]
        ids = {e for e, t in self.committed.get(category, []) if start <= t < end}
        self.fresh = [r for r in self.fresh if not (r[1] in sources and start <= r[3] < end and r[2] in ids)]
        return self

    def result(self) -> None:
        return None

    def view(self, category: str) -> Counter[str]:
        """The view's rows (views.py): committed rows, plus one row per fresh event_id not committed."""
        committed = Counter(e for e, _ in self.committed.get(category, []))
        fresh = {r[2] for r in self.fresh if r[0] == category and r[2] not in committed}
        return committed + Counter(fresh)

    def commit_bases(self) -> list[str]:
        return [s.job_base for s in self.specs if s.kind == "commit"]


class World:
    def __init__(self, shards: int = 2) -> None:
        self.clock = Clock(NOW)
        self.store = MemoryStore(clock=self.clock)
        self.lander = Lander(self.store, [c.name for c in CAT.categories], Metrics())
        catalog = sharded_catalog(shards)
        self.fin = Finalizer(self.store, catalog, Metrics(), FinalizeSettings(writer="test"), clock=self.clock)
        self.bq = FakeBigQuery(self.store)
        self.landed: list[str] = []

    def land(self, ids: list[str], when: dt.datetime = NOW) -> None:
        enc = make_envelope("ads_click", ids, when)
        self.lander.land(enc.data, enc.attributes)
        self.landed += ids

    def finalize(self, index: int) -> None:
        shards = self.fin.shards(P)
        assert len(self.fin.finalize_shard(P, shards[index])) == 1

    def loader(self) -> Loader:
        cfg = LoaderConfig(project="p", bucket="b", dataset="ds", tiers=("core",), fresh_convert_lookback_seconds=0)
        loader = Loader(cfg, CAT, self.bq, self.store, clock=self.clock)
        for committed, fresh in loader._passes:
            committed._runner = fresh._runner = self.bq  # type: ignore[assignment]
        return loader

    def run(self, loader: Loader, *, all_shown: bool = True) -> None:
        """One loader pass once everything landed is in a closed fresh slot, then the view is checked: every landed
        event exactly once (at most once unless ``all_shown``)."""
        self.clock.now += dt.timedelta(minutes=2)
        loader.run_once()
        view, landed = self.bq.view("ads_click"), Counter(set(self.landed))
        assert view == landed if all_shown else view <= landed, "each landed event once in the view"

    def staging(self) -> frozenset[str]:
        return frozenset(n for n in self.store.names() if n.startswith("staging/ads_click/"))

    def fresh_files(self) -> set[str]:
        return {n for n in self.store.names() if n.startswith("bq/fresh/core/")}


def committed_pass(loader: Loader) -> CommittedLoader:
    (pair,) = loader._passes
    return pair[0]


def ids(prefix: str, n: int = 40) -> list[str]:
    got = [f"{prefix}-{i:03d}" for i in range(n)]
    assert {shard_of(i, 2) for i in got} == {0, 1}, "both shards get events"
    return got


def of_shard(events: list[str], index: int) -> set[str]:
    return {e for e in events if shard_of(e, 2) == index}


def test_names_of_unsharded_partitions_are_unchanged_and_each_shard_has_its_own() -> None:
    assert (
        names.committed_marker(P, 1)
        == names.committed_marker(P, 1, WHOLE)
        == "bq/committed/ads_click/2026/11/26/13/g0001.loaded"
    )
    assert names.committed_marker(P, 3, Shard(1, 4)) == "bq/committed/ads_click/2026/11/26/13/s01of04-g0003.loaded"
    assert names.commit_job_base("x", "ds", P, 2, "tok") == "x-commit-ds-ads_click-2026112613-g0002-tok"
    assert (
        names.commit_job_base("x", "ds", P, 2, "tok", Shard(0, 2))
        == "x-commit-ds-ads_click-2026112613-s00of02-g0002-tok"
    )
    markers = {names.committed_marker(P, 1, s) for s in (WHOLE, *Shard.all(2), *Shard.all(3))}
    assert len(markers) == 6


def test_generation_1_of_two_shards_is_loaded_twice_with_distinct_job_ids_and_markers() -> None:
    w = World()
    w.land(ids("a"))
    w.finalize(0)
    w.finalize(1)
    loader = w.loader()
    w.run(loader)
    bases = w.bq.commit_bases()
    assert len(bases) == 2 and len(set(bases)) == 2
    assert sorted("-s00of02-g0001-" in b for b in bases) == [False, True]
    assert sorted("-s01of02-g0001-" in b for b in bases) == [False, True]
    for shard in Shard.all(2):
        assert w.store.stat(names.committed_marker(P, 1, shard)) is not None
    assert w.store.stat(names.committed_marker(P, 1)) is None
    assert Counter(e for e, _ in w.bq.committed["ads_click"]) == Counter(w.landed), "each event committed once"

    w.run(loader)
    w.run(w.loader())  # a restarted process finds both markers
    assert len(w.bq.specs) == len([s for s in w.bq.specs if s.kind == "fresh"]) + 2, "no commit loaded again"


def test_a_shards_delete_keeps_the_fresh_rows_of_the_other_shards_events() -> None:
    w = World()
    events = ids("a")
    w.land(events[:25])
    w.land(events[25:])
    loader = w.loader()
    w.run(loader)  # fresh only
    assert {r[2] for r in w.bq.fresh} == set(events)
    (batch,) = {n for n in w.fresh_files() if n.endswith(".json")}

    w.finalize(0)
    w.run(loader)  # shard 0 loaded, its C3 ran: the view still shows shard 1's events (checked by run)
    assert {e for e, _ in w.bq.committed["ads_click"]} == of_shard(events, 0)
    assert {r[2] for r in w.bq.fresh} == of_shard(events, 1), "only the committed events' fresh rows are deleted"
    assert w.bq.statements == [fresh_delete_sql(f"{TARGET}._fresh_core", f"{TARGET}.ads_click__committed")]
    assert committed_pass(loader).committed_sources == frozenset(), "not every shard consumed them"
    assert batch in w.store.names(), "F4 waits for every shard"

    w.finalize(1)
    w.run(loader)
    assert w.bq.fresh == []
    assert batch not in w.store.names() and not w.fresh_files(), "F4 cleaned the batch"


def test_the_fresh_path_loads_a_source_until_every_shard_committed_it() -> None:
    """Shard 0 commits before any fresh pass saw the objects: the fresh path must still load them (shard 1's events
    are committed nowhere), and shard 1's delete then removes shard 0's rows that this load brought back."""
    w = World()
    events = ids("b")
    w.land(events)
    w.finalize(0)
    loader = w.loader()
    w.run(loader)  # view checked: shard 1's events are shown through the fresh table
    assert {r[2] for r in w.bq.fresh} == set(events)
    w.finalize(1)  # writes _SUCCESS: the hour is complete
    w.run(loader)
    assert w.bq.fresh == [], "the hour's delete removes every committed event's rows"
    assert not w.fresh_files()
    assert committed_pass(loader).committed_sources == frozenset(), "handed over"


def test_a_shard_with_a_pending_load_keeps_the_other_shards_fresh_rows_until_it_is_loaded() -> None:
    w = World(shards=3)
    events = [f"c-{i:03d}" for i in range(60)]
    assert {shard_of(e, 3) for e in events} == {0, 1, 2}
    w.land(events)
    loader = w.loader()
    w.run(loader)
    for k in range(3):
        w.finalize(k)
    w.bq.pending = {"-s02of03-"}
    w.run(loader)
    w.run(loader)
    assert {r[2] for r in w.bq.fresh} == {e for e in events if shard_of(e, 3) == 2}
    assert w.fresh_files(), "F4 waits for shard 2"
    w.bq.pending = set()
    w.run(loader)
    assert w.bq.fresh == [] and not w.fresh_files()


def test_names_a_partial_set_of_shards_holds_are_dropped_once_no_batch_waits_on_their_hour() -> None:
    """Shard 1's load is pending and no fresh batch ever held the hour's objects: what shard 0's loaded manifest holds
    for F4 is of no use, and must not stay held until shard 1 is loaded."""
    w = World()
    w.land(ids("d"))
    w.finalize(0)
    w.finalize(1)  # the hour is complete before any loader pass: F2 never lists it
    w.bq.pending = {"-s01of02-"}
    loader = w.loader()
    committed = committed_pass(loader)
    w.run(loader, all_shown=False)  # shard 1's events wait for its load (a complete hour: F2 does not list it)
    assert committed.done_sources == frozenset()
    assert committed._known.handover_room() == 100_000, "nothing held"
    w.bq.pending = set()
    w.run(loader)
    assert committed._known.handover_room() == 100_000 and not committed.wants_waiting


def test_a_restarted_loader_reads_the_sibling_shards_names_beyond_the_room(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart finds both shards' manifests loaded (by a process without the fresh path's batches), and the batch it
    recovers waits on their hour: it reads the names of both shards, even when the first spent the room, so F4 can
    clean the batch. (Without the sibling, the first's names would be held for good and the batch never cleaned.)"""
    w = World()
    w.land(ids("e"))
    w.run(w.loader())  # a batch holds the objects; then this process dies
    w.finalize(0)
    w.finalize(1)
    other = new_loader(w.store, w.bq, w.bq, w.clock)  # type: ignore[arg-type]
    assert other.run() == 2  # another loader's committed pass loads both shards
    assert w.fresh_files()
    monkeypatch.setattr(known, "_HANDOVER_SOURCES", 1)  # one manifest's names spend the room
    restarted = w.loader()
    w.run(restarted)  # finds the markers (unread); its fresh path recovers the batch, which waits on the hour
    assert not committed_pass(restarted).any_unread, "both shards' names read"
    w.run(restarted)
    assert not w.fresh_files(), "the batch is cleaned"


class _Blob:
    def __init__(self, store: MemoryStore, name: str) -> None:
        self.store, self.name = store, name

    def download_as_bytes(self) -> bytes:
        return self.store.read(self.name)


class _Bucket:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def blob(self, name: str) -> _Blob:
        return _Blob(self.store, name)


class FakeStorage:
    """The part of ``google.cloud.storage.Client`` that ``read_committed`` uses, over the in-memory store."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def bucket(self, name: str) -> _Bucket:
        return _Bucket(self.store)

    def list_blobs(self, bucket: str, prefix: str) -> list[_Blob]:
        return [_Blob(self.store, n) for n in sorted(self.store.names()) if n.startswith(prefix)]


def test_the_demos_reconciliation_reads_every_shards_manifests() -> None:
    w = World()
    w.land(ids("r"))
    w.finalize(0)
    w.finalize(1)
    got = read_committed(FakeStorage(w.store), "b", CAT)
    assert not got.problems
    assert sorted(m["shard"] for m in got.manifests) == [0, 1]
    assert got.ids == Counter(w.landed), "every event, once"
