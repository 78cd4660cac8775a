"""The committed pass on the in-memory store, with a recording fake runner and a fake client for the DELETE: one load
per manifest generation, job ids from (category, hour, generation), markers only after the fresh rows are deleted;
manifests of old partitions (late data) loaded by backfill passes, and memory bounded by the backfill window (and
source names by the fresh window: see also test_bigquery_loader_memory.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from replicator.bigquery import names
from replicator.bigquery.committed import CommittedLoader, Target, fresh_delete_sql
from replicator.bigquery.errors import LoadPending
from replicator.bigquery.fresh import FreshLoader
from replicator.bigquery.jobs import LoadOutcome, LoadSpec
from replicator.bigquery.loader import LoaderConfig
from replicator.bigquery.metrics import LoaderMetrics
from replicator.config import ReplicatorConfig
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Partition, days_between
from replicator.metrics import Metrics
from replicator.store import MemoryStore, ObjectInfo
from replicator.synth import make_envelope
from service.catalog import load_catalog
from service.cli import app
from service.frontend.config import FrontendConfig

pytestmark = pytest.mark.unit
CAT = load_catalog()
NOW = dt.datetime(2026, 11, 26, 13, 30, tzinfo=dt.UTC)
P = Partition("ads_click", NOW.replace(minute=0))
OLD = NOW - dt.timedelta(days=4)  # an event time the front-end accepts (7 days), outside the 72 h lookback


class FakeRunner:
    def __init__(self) -> None:
        self.specs: list[LoadSpec] = []

    def load(self, spec: LoadSpec) -> LoadOutcome:
        self.specs.append(spec)
        return LoadOutcome(names.job_id(spec.job_base, 0), 1, True)


class FakeClient:
    """Records C3's statements: only the guarded DELETE (``fresh_delete_sql``) on the core tier's tables is accepted.
    Keeps no rows (test_bigquery_shards.py's ``FakeBigQuery`` executes the statement): ``deleted`` holds each
    statement's ``@sources``, ``hours`` its (category, ``@start``, ``@end``)."""

    def __init__(self) -> None:
        self.deleted: list[list[str]] = []
        self.hours: list[tuple[str, dt.datetime, dt.datetime]] = []
        self.fail = False

    def query(self, sql: str, job_config: Any) -> Any:
        if self.fail:
            raise RuntimeError("concurrent update")
        by_sql = {
            fresh_delete_sql("p.ds._fresh_core", f"p.ds.{names.committed_table(c.name)}"): c.name
            for c in CAT.categories_in("core")
        }
        category = by_sql[sql]  # any other statement: KeyError
        params = {q.name: q for q in job_config.query_parameters}
        start, end = params["start"].value, params["end"].value
        assert end - start == dt.timedelta(hours=1) and start.minute == start.second == start.microsecond == 0
        self.deleted.append(list(params["sources"].values))
        self.hours.append((category, start, end))
        return self

    def result(self) -> None:
        return None


def setup() -> tuple[MemoryStore, Lander, Finalizer, FakeRunner, FakeClient, CommittedLoader]:
    store = MemoryStore(clock=lambda: NOW)
    metrics = Metrics()
    lander = Lander(store, [c.name for c in CAT.categories], metrics)
    fin = Finalizer(store, CAT, metrics, FinalizeSettings(writer="test"), clock=lambda: NOW)
    runner, client = FakeRunner(), FakeClient()
    return store, lander, fin, runner, client, new_loader(store, runner, client)


class Clock:
    """A clock the test moves."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class ListingStore(MemoryStore):
    """The in-memory store, recording every prefix listed."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.listed: list[str] = []

    def list(self, prefix: str, *, start_offset: str = "") -> Iterator[ObjectInfo]:
        self.listed.append(prefix)
        return super().list(prefix, start_offset=start_offset)


def new_loader(
    store: MemoryStore, runner: FakeRunner, client: FakeClient, clock: Clock | None = None, **windows: dt.timedelta
) -> CommittedLoader:
    """A loader process: nothing in memory but what it reads from the store."""
    windows.setdefault("lookback", dt.timedelta(hours=3))
    return CommittedLoader(
        store=store, client=client, runner=runner, metrics=LoaderMetrics(), target=Target("p", "ds", "b"),  # type: ignore[arg-type]
        tier="core", categories=CAT.categories_in("core"), clock=clock or (lambda: NOW), **windows,
    )  # fmt: skip


def land(lander: Lander, ids: list[str], when: dt.datetime = NOW) -> None:
    enc = make_envelope("ads_click", ids, when)
    lander.land(enc.data, enc.attributes)


def staging(store: MemoryStore, when: dt.datetime) -> frozenset[str]:
    return frozenset(n for n in store.names() if n.startswith(f"staging/ads_click/{when:%Y/%m/%d}/"))


def logs_days_listed(store: ListingStore) -> set[str]:
    return {p.split("/", 2)[2] for p in store.listed if p.startswith("logs/ads_click/")}


def world(clock: Clock) -> tuple[ListingStore, Lander, Finalizer, FakeRunner, FakeClient]:
    store = ListingStore(clock)
    metrics = Metrics()
    lander = Lander(store, [c.name for c in CAT.categories], metrics)
    fin = Finalizer(store, CAT, metrics, FinalizeSettings(writer="test"), clock=clock)
    return store, lander, fin, FakeRunner(), FakeClient()


def test_each_generation_loads_once_with_its_own_job_id() -> None:
    store, lander, fin, runner, client, loader = setup()
    land(lander, ["a", "b"])
    fin.finalize_partition(P)
    assert loader.run() == 1
    spec = runner.specs[0]
    assert spec.job_base.startswith("logpipe-commit-ds-ads_click-2026112613-g0001-")
    assert spec.table == "p.ds.ads_click__committed" and spec.source_format == "AVRO" and spec.allow_field_addition
    assert all(u.startswith("gs://b/logs/ads_click/2026/11/26/13/part-g0001-") for u in spec.uris)
    assert client.deleted == [[n for n in store.names() if n.startswith("staging/")]]
    assert store.stat(names.committed_marker(P, 1)) is not None
    assert loader.run() == 0 and len(runner.specs) == 1, "done: not loaded again"

    land(lander, ["c"])
    fin.finalize_partition(P)
    assert loader.run() == 1
    assert "-g0002-" in runner.specs[1].job_base
    assert (
        loader.committed_sources
        == loader.done_sources
        == frozenset(n for n in store.names() if n.startswith("staging/"))
    )


def test_markers_wait_for_the_fresh_delete_and_a_restart_resumes() -> None:
    store, lander, fin, runner, client, loader = setup()
    land(lander, ["a"])
    fin.finalize_partition(P)
    client.fail = True
    assert loader.run() == 0
    assert store.stat(names.committed_marker(P, 1)) is None, "no marker before the delete succeeded"
    client.fail = False
    assert new_loader(store, runner, client).run() == 1  # a restarted process
    assert runner.specs[0].job_base == runner.specs[1].job_base, "the same job id: a 409 on BigQuery"
    assert store.stat(names.committed_marker(P, 1)) is not None


def test_the_default_backfill_window_covers_every_event_time_the_front_end_accepts() -> None:
    past = dt.timedelta(seconds=FrontendConfig.model_fields["event_time_past_s"].default)
    lateness = dt.timedelta(seconds=ReplicatorConfig.model_fields["lateness_seconds"].default)
    config = LoaderConfig(project="p", bucket="b")
    assert dt.timedelta(hours=config.backfill_hours) >= past + dt.timedelta(hours=1) + lateness
    assert config.backfill_hours >= config.lookback_hours >= config.horizon_hours


def test_a_restarted_loader_loads_an_old_partition_on_its_first_pass() -> None:
    store, lander, fin, runner, client = world(Clock(NOW))
    land(lander, ["old"], OLD)  # accepted by the front-end, committed long after the lookback's reach
    assert len(fin.finalize_partition(Partition.of("ads_click", OLD))) == 1
    loader = new_loader(store, runner, client, lookback=dt.timedelta(hours=72))  # the default windows
    assert loader.run() == 1
    assert runner.specs[0].job_base.startswith(f"logpipe-commit-ds-ads_click-{OLD:%Y%m%d%H}-g0001-")
    assert client.deleted == [sorted(staging(store, OLD))]
    assert client.hours == [("ads_click", OLD.replace(minute=0), OLD.replace(minute=0) + dt.timedelta(hours=1))]
    assert store.stat(names.committed_marker(Partition.of("ads_click", OLD), 1)) is not None


def test_a_late_manifest_of_an_old_partition_waits_for_the_next_backfill_pass_only() -> None:
    clock = Clock(NOW)
    store, lander, fin, runner, client = world(clock)
    loader = new_loader(store, runner, client, clock, backfill_interval=dt.timedelta(hours=1))
    assert loader.run() == 0
    assert f"{OLD:%Y/%m/%d}/" in logs_days_listed(store), "the first pass lists the backfill window"
    land(lander, ["late"], OLD)  # e.g. a spool replayed after an outage
    fin.finalize_partition(Partition.of("ads_click", OLD))
    for minutes in (1, 30, 59):  # passes in between list only the lookback: cheap
        store.listed.clear()
        clock.now = NOW + dt.timedelta(minutes=minutes)
        assert loader.run() == 0 and not runner.specs
        assert logs_days_listed(store) == {f"{NOW:%Y/%m/%d}/"}
    clock.now = NOW + dt.timedelta(hours=1)
    assert loader.run() == 1, "the next backfill pass finds it"
    assert runner.specs[0].job_base.startswith(f"logpipe-commit-ds-ads_click-{OLD:%Y%m%d%H}-g0001-")
    clock.now += dt.timedelta(minutes=1)
    assert loader.run() == 0 and len(runner.specs) == 1


def test_windows_that_do_not_nest_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"backfill_hours \(192\) must be >= lookback_hours \(200\)"):
        LoaderConfig(project="p", bucket="b", lookback_hours=200)
    with pytest.raises(ValidationError, match=r"backfill_hours \(24\) must be >= horizon_hours \(48\)"):
        LoaderConfig(project="p", bucket="b", lookback_hours=12, backfill_hours=24)
    assert LoaderConfig(project="p", bucket="b", lookback_hours=500, backfill_hours=500).backfill_hours == 500
    with pytest.raises(ValueError, match="must contain the lookback window"):
        new_loader(MemoryStore(), FakeRunner(), FakeClient(), backfill=dt.timedelta(hours=2))
    cli = CliRunner().invoke(app, ["load", "--bucket", "b", "--once", "--lookback-hours", "200"])
    assert cli.exit_code == 2
    assert "backfill_hours (192) must be >= lookback_hours (200)" in cli.stderr


def test_days_older_than_the_backfill_window_are_forgotten_and_never_listed_again() -> None:
    clock = Clock(NOW)
    store, lander, fin, runner, client = world(clock)
    land(lander, ["old"], OLD)
    land(lander, ["new"])
    fin.finalize_partition(Partition.of("ads_click", OLD))
    fin.finalize_partition(P)
    loader = new_loader(store, runner, client, clock)
    assert loader.run() == 2
    assert client.deleted == [sorted(staging(store, OLD)), sorted(staging(store, NOW))], "C3 covers both"
    assert client.hours == [
        ("ads_click", hour, hour + dt.timedelta(hours=1)) for hour in (OLD.replace(minute=0), NOW.replace(minute=0))
    ], "one statement per partition, bounded to its hour"
    # OLD's day is before the fresh window (48 h): the fresh path never looks its names up, so none are kept
    assert loader.committed_sources == loader.done_sources == staging(store, NOW)
    assert loader.committed_sources is loader.committed_sources, "built once until something changes"

    clock.now = OLD + dt.timedelta(hours=192 + 24)  # OLD's day left the backfill window, NOW's is still in it
    store.listed.clear()
    assert loader.run() == 0 and len(runner.specs) == 2, "NOW's manifest is remembered (without its sources)"
    assert f"{NOW:%Y/%m/%d}/" in logs_days_listed(store)
    assert loader.committed_sources == loader.done_sources == frozenset(), "NOW's day left the fresh window"
    assert min(day for _, day in loader._known._days) == (clock.now - loader.backfill).date()
    assert f"{OLD:%Y/%m/%d}/" not in logs_days_listed(store), "a forgotten day is not listed again: no reload"

    clock.now = NOW + dt.timedelta(days=30)
    assert loader.run() == 0 and len(runner.specs) == 2
    assert loader.committed_sources == loader.done_sources == frozenset()
    window = list(days_between(clock.now - loader.backfill, clock.now + dt.timedelta(hours=1)))
    assert len(window) == 9 and len(loader._known._days) == len(CAT.categories_in("core")) * len(window), "bounded"


@pytest.mark.parametrize("days_later", [0, 1, 2, 3, 4, 5, 10])
@pytest.mark.parametrize(("horizon_h", "backfill_h"), [(48, 48), (48, 192), (96, 192)])
def test_forgetting_never_makes_the_fresh_path_load_a_committed_object_again(
    days_later: int, horizon_h: int, backfill_h: int
) -> None:
    """Whether the committed path forgets a whole day (backfill = horizon: the narrowest window allowed) or only its
    source names (the day leaves the fresh window): while the fresh path lists a day, its sources are known."""
    clock = Clock(NOW)
    store, lander, fin, runner, client = world(clock)
    horizon, backfill = dt.timedelta(hours=horizon_h), dt.timedelta(hours=backfill_h)
    committed = new_loader(store, runner, client, clock, backfill=backfill, fresh_horizon=horizon)
    fresh = FreshLoader(
        store=store, runner=runner, metrics=LoaderMetrics(), target=Target("p", "ds", "b"), tier="core",  # type: ignore[arg-type]
        categories=CAT.categories_in("core"), horizon=horizon, clock=clock,
    )  # fmt: skip
    land(lander, ["a", "b"])
    clock.now += dt.timedelta(minutes=2)  # the fresh slot closes
    assert fresh.run(committed.committed_sources, committed.done_sources) == 2
    fin.finalize_partition(P)
    assert committed.run() == 1
    fresh.run(committed.committed_sources, committed.done_sources)  # clean-up: the batch is gone
    assert [s.kind for s in runner.specs] == ["fresh", "commit"]

    clock.now = NOW.replace(hour=23, minute=59) + dt.timedelta(days=days_later)  # the edges of the fresh horizon
    listed_now = []
    for _ in range(2):  # 23:59 and 00:00: the fresh horizon's first day moves
        committed.run()
        store.listed.clear()
        assert fresh.run(committed.committed_sources, committed.done_sources) == 0
        fresh.convert(committed.committed_sources)
        if f"staging/ads_click/{NOW:%Y/%m/%d}/" in store.listed:  # while the fresh path lists NOW's day ...
            assert staging(store, NOW) <= committed.committed_sources, "... its manifest is still known"
            listed_now.append(clock.now)
        clock.now += dt.timedelta(minutes=1)
    assert [s.kind for s in runner.specs] == ["fresh", "commit"], "no fresh load of a committed object"
    expected = {48: {0: 2, 1: 2, 2: 1}, 96: {0: 2, 1: 2, 2: 2, 3: 2, 4: 1}}[horizon_h]
    assert len(listed_now) == expected.get(days_later, 0)
    if not listed_now:
        assert committed.committed_sources == committed.done_sources == frozenset(), "NOW's day is forgotten"


class PendingRunner(FakeRunner):
    """A runner whose loads stay pending (a quota, a job still running) until ``pending`` is cleared."""

    def __init__(self) -> None:
        super().__init__()
        self.pending = True

    def load(self, spec: LoadSpec) -> LoadOutcome:
        if self.pending:
            raise LoadPending(f"{spec.job_base}: still running")
        return super().load(spec)


def test_a_pending_commit_load_writes_no_marker_and_is_loaded_next_pass() -> None:
    # G1 in BigQuery: a load that has not finished must not be marked loaded (mutation audit: a pending load that
    # fell through to its .loaded marker survived every test).
    store, lander, fin, _, client, _ = setup()
    runner = PendingRunner()
    loader = new_loader(store, runner, client)  # type: ignore[arg-type]
    land(lander, ["a", "b"])
    fin.finalize_partition(P)
    assert loader.run() == 0
    assert store.stat(names.committed_marker(P, 1)) is None and client.deleted == []
    runner.pending = False
    assert loader.run() == 1 and len(runner.specs) == 1
    assert store.stat(names.committed_marker(P, 1)) is not None
