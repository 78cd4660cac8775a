"""The fresh pass lists only the staging hours not known complete (``_SUCCESS``), on the in-memory store through the
loader (``Loader.run_once``: committed pass, then fresh pass), with the finalizer committing hours: its listing no
longer grows with the committed hours of the horizon, open hours still reach the fresh table, a late envelope into a
complete hour reaches the committed table through its delta, batches are resumed and cleaned up across an hour's
completion, and no stale or forgotten knowledge makes an incomplete hour look complete."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass

import fastavro
import pytest

from replicator.bigquery import names
from replicator.bigquery.errors import LoadPending
from replicator.bigquery.hours import is_complete, staging_prefixes
from replicator.bigquery.jobs import LoadOutcome, LoadSpec
from replicator.bigquery.loader import Loader, LoaderConfig
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Layout, Partition, parse_partition_dir
from replicator.manifest import Manifest
from replicator.metrics import Metrics
from replicator.store import MemoryStore, ObjectInfo
from replicator.synth import make_envelope
from tests.unit.test_bigquery_committed import CAT, NOW, Clock, FakeClient, FakeRunner

pytestmark = pytest.mark.unit
OPEN = NOW.replace(minute=0)  # 13:00, the hour that is still open
LAYOUT = Layout()


class CountingStore(MemoryStore):
    """The in-memory store, recording every prefix listed and how many objects the listing returned."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.listed: list[tuple[str, int]] = []

    def list(self, prefix: str, *, start_offset: str = "") -> Iterator[ObjectInfo]:
        objects = list(super().list(prefix, start_offset=start_offset))
        self.listed.append((prefix, len(objects)))
        return iter(objects)

    def staging_listed(self) -> tuple[int, int]:
        """(listings, objects listed) under ``staging/``."""
        got = [n for p, n in self.listed if p.startswith("staging/")]
        return len(got), sum(got)


class FreshPendingRunner(FakeRunner):
    """Fresh loads are pending while ``pending`` (BigQuery unreachable for them); commit loads succeed."""

    pending = False

    def load(self, spec: LoadSpec) -> LoadOutcome:
        self.specs.append(spec)
        if self.pending and spec.kind == "fresh":
            raise LoadPending("BigQuery unavailable")
        return LoadOutcome(names.job_id(spec.job_base, 0), 1, True)


@dataclass
class World:
    clock: Clock
    store: CountingStore
    lander: Lander
    fin: Finalizer
    runner: FakeRunner
    client: FakeClient

    def land(self, ids: list[str], when: dt.datetime) -> str:
        enc = make_envelope("ads_click", ids, when)
        return self.lander.land(enc.data, enc.attributes).names[0]

    def loader(self, runner: FakeRunner | None = None, **config: int) -> Loader:
        """A loader process (the default windows: horizon 48 h, lookback 72 h, backfill 192 h). ``convert`` lists whole
        hours: the envelope ids here are not UUIDv7 (test_bigquery_fresh_lookback.py covers the lookback)."""
        config.setdefault("fresh_convert_lookback_seconds", 0)
        cfg = LoaderConfig(project="p", bucket="b", dataset="ds", tiers=("core",), **config)  # type: ignore[arg-type]
        loader = Loader(cfg, CAT, self.client, self.store, clock=self.clock)
        for committed, fresh in loader._passes:  # the fake runner instead of BigQuery's jobs
            committed._runner = fresh._runner = runner or self.runner  # type: ignore[assignment]
        return loader

    def fresh_uris(self) -> set[str]:
        return {u for s in self.runner.specs if s.kind == "fresh" for u in s.uris}

    def complete_staging(self) -> set[str]:
        """The staging objects of every hour whose ``_SUCCESS`` exists."""
        done = {p for n in self.store.names() if n.endswith("/_SUCCESS") and (p := parse_partition_dir(n, "logs"))}
        return {n for n in self.store.names() if parse_partition_dir(n, "staging") in done}


def world(committed_hours: int, unfinalized: tuple[int, ...] = ()) -> World:
    """``committed_hours`` hours before OPEN landed and committed by the finalizer (gen 1 + ``_SUCCESS``), except
    those ``unfinalized`` (hours back: landed, not yet finalized), and one envelope in OPEN. The clock: OPEN's first
    slot has closed."""
    clock = Clock(NOW)
    store = CountingStore(clock)
    lander = Lander(store, [c.name for c in CAT.categories], Metrics())
    fin = Finalizer(store, CAT, Metrics(), FinalizeSettings(writer="test"), clock=clock)
    w = World(clock, store, lander, fin, FakeRunner(), FakeClient())
    for back in range(1, committed_hours + 1):
        hour = OPEN - dt.timedelta(hours=back)
        w.land([f"h{back}-a", f"h{back}-b"], hour + dt.timedelta(minutes=10))
        w.land([f"h{back}-c"], hour + dt.timedelta(minutes=20))
        if back not in unfinalized:
            assert len(fin.finalize_partition(Partition("ads_click", hour))) == 1
    w.land(["open-1"], NOW)
    clock.now = NOW + dt.timedelta(minutes=2)
    return w


def horizon_hours() -> int:
    """From 00:00 of the fresh window's first day (the day of now - 48 h) to the hour before OPEN: 61."""
    first = dt.datetime.combine((NOW - dt.timedelta(hours=48)).date(), dt.time(0), dt.UTC)
    return (OPEN - first) // dt.timedelta(hours=1)


def steady_pass(w: World, loader: Loader) -> tuple[int, int]:
    """A pass a minute after the previous one, with one new envelope in OPEN: (staging listings, objects listed)."""
    w.land([f"open-{w.clock.now.minute}"], w.clock.now)
    w.clock.now += dt.timedelta(minutes=1)
    w.store.listed.clear()
    loader.run_once()
    return w.store.staging_listed()


def test_a_pass_lists_no_staging_object_of_a_complete_hour_and_its_cost_does_not_grow_with_them() -> None:
    measured = {}
    for hours in (13, horizon_hours()):  # today's complete hours only, then every hour of the horizon's days
        w = world(hours)
        loader = w.loader()
        w.store.listed.clear()
        loader.run_once()  # the first pass: the committed pass loads every manifest, then the fresh pass runs
        complete = w.complete_staging()
        assert len(complete) == 2 * hours
        for prefix, _ in w.store.listed:
            assert not any(n.startswith(prefix) for n in complete), f"{prefix} lists objects of complete hours"
        first = w.store.staging_listed()
        measured[hours] = steady_pass(w, loader)
        for prefix, _ in w.store.listed:
            assert not any(n.startswith(prefix) for n in complete), f"{prefix} lists objects of complete hours"
        assert first[1] == 1 and measured[hours][1] == 2, "the open hour's objects only"
        w.store.listed.clear()
        loader.convert_once()
        assert [p for p, _ in w.store.listed if p.startswith("staging/ads_click/")] == [
            f"staging/ads_click/{OPEN:%Y/%m/%d/%H}/"
        ], "convert skips the previous hour: complete"
    assert measured[13][1] == measured[horizon_hours()][1], "objects listed do not grow with the committed hours"
    # ads_click: OPEN and the next hour (events up to 1 h ahead); login_event (no data, so no hour complete): one
    # listing per day of the horizon. With 13 hours, ads_click's first two days have no complete hour: a day each.
    assert measured[horizon_hours()][0] == 2 + 3 and measured[13][0] == 2 + 2 + 3


def test_an_open_hour_and_a_closed_hour_not_yet_finalized_reach_the_fresh_table() -> None:
    w = world(horizon_hours(), unfinalized=(2,))  # 11:00 closed, but the finalizer is behind
    loader = w.loader()
    loader.run_once()
    behind = LAYOUT.staging_dir(Partition("ads_click", OPEN - dt.timedelta(hours=2)))
    expected = {n for n in w.store.names() if n.startswith((behind, LAYOUT.staging_dir(Partition("ads_click", OPEN))))}
    assert len(expected) == 3
    assert w.fresh_uris() == {f"gs://b/{names.fresh_object('core', n)}" for n in expected}
    assert f"staging/ads_click/{OPEN - dt.timedelta(hours=2):%Y/%m/%d/%H}/" in [p for p, _ in w.store.listed]


def read_events(store: MemoryStore, uri: str) -> list[str]:
    return [r["event_id"] for r in fastavro.reader(io.BytesIO(store.read(uri.removeprefix("gs://b/"))))]  # type: ignore[call-overload, index]


def test_a_late_envelope_into_a_complete_hour_is_loaded_by_the_committed_path_after_its_delta() -> None:
    w = world(horizon_hours())
    loader = w.loader()
    loader.run_once()
    h = Partition("ads_click", OPEN - dt.timedelta(hours=3))
    late = w.land(["late-1", "late-2", "h3-a"], h.hour + dt.timedelta(minutes=30))  # h3-a: a late duplicate
    w.clock.now += dt.timedelta(minutes=2)  # its slot closed
    assert loader.convert_once() == 0, "not converted: its hour is complete"
    loader.run_once()
    assert f"gs://b/{names.fresh_object('core', late)}" not in w.fresh_uris(), "the fresh path leaves it to the delta"
    assert not any("-g0002-" in s.job_base for s in w.runner.specs)

    assert [m.generation for m in w.fin.run_pass(["ads_click"], lambda p: p.hour < OPEN)] == [2]  # the next pass
    w.clock.now += dt.timedelta(minutes=1)
    loader.run_once()
    (spec,) = [s for s in w.runner.specs if "-g0002-" in s.job_base]
    assert spec.job_base.startswith(f"logpipe-commit-ds-ads_click-{h.hour:%Y%m%d%H}-g0002-")
    assert Manifest.from_json(w.store.read(LAYOUT.manifest(h, 2))).sources == (late,)
    assert sorted(e for u in spec.uris for e in read_events(w.store, u)) == ["late-1", "late-2"], "none lost"
    assert late in w.client.deleted[-1]


def test_a_batch_whose_hour_completed_is_cleaned_up() -> None:
    w = world(13)
    loader = w.loader()
    loader.run_once()
    assert len(w.fresh_uris()) == 1 and any(n.startswith("bq/fresh/core/") for n in w.store.names())
    w.clock.now = OPEN + dt.timedelta(hours=1, minutes=15)  # OPEN closed and the finalizer committed it
    assert len(w.fin.finalize_partition(Partition("ads_click", OPEN))) == 1
    w.store.listed.clear()
    loader.run_once()
    assert f"staging/ads_click/{OPEN:%Y/%m/%d/%H}/" not in [p for p, _ in w.store.listed], "complete: not listed"
    assert not any(n.startswith("bq/fresh/core/") for n in w.store.names()), "F4 cleaned the batch"


def test_a_pending_batch_is_resumed_after_its_hour_completed_then_cleaned_up() -> None:
    w = world(13)
    pending = FreshPendingRunner()
    pending.pending = True
    w.loader(pending).run_once()
    (first,) = [s for s in pending.specs if s.kind == "fresh"]
    w.clock.now = OPEN + dt.timedelta(hours=1, minutes=15)
    assert len(w.fin.finalize_partition(Partition("ads_click", OPEN))) == 1
    w.store.listed.clear()
    w.loader().run_once()  # a restarted process: F1 resumes the recorded batch though F2 no longer lists its hour
    assert f"staging/ads_click/{OPEN:%Y/%m/%d/%H}/" not in [p for p, _ in w.store.listed]
    (resumed,) = [s for s in w.runner.specs if s.kind == "fresh"]
    assert resumed.job_base == first.job_base and resumed.uris == first.uris, "the same batch, the same job id"
    assert not any(n.startswith("bq/fresh/core/") for n in w.store.names()), "then F4 cleaned it"


def test_an_object_converted_ahead_whose_hour_completed_is_forgotten() -> None:
    """Converted while its hour looked open, then the hour turned out complete: no batch will ever take it (G4)."""
    w = world(13)
    loader = w.loader()
    loader.run_once()
    (committed, fresh) = loader._passes[0]
    h = OPEN - dt.timedelta(hours=1)
    late = w.land(["late"], h + dt.timedelta(minutes=59))
    # Not told the hour is complete: converted, and so are the hour's committed objects, whose names the committed
    # path dropped once the fresh pass had seen them loaded (committed_sources covers the open hours only)
    assert fresh.convert(committed.committed_sources) == 3
    assert late in fresh._conv.converted
    w.clock.now += dt.timedelta(minutes=2)
    loader.run_once()
    assert late not in fresh._conv.converted and late not in fresh._conv.latency
    hour_dir = LAYOUT.staging_dir(Partition("ads_click", h))
    assert not any(s.startswith(hour_dir) for s in fresh._conv.converted), "its committed objects are forgotten too"
    assert f"gs://b/{names.fresh_object('core', late)}" not in w.fresh_uris()


def assert_known_complete_is_true(w: World, loader: Loader) -> None:
    committed = loader._passes[0][0]
    for (category, day), hours in committed.complete_hours.items():
        for h in hours:
            p = Partition(category, dt.datetime.combine(day, dt.time(h), dt.UTC))
            assert w.store.stat(LAYOUT.success_marker(p)) is not None, f"{p} looks complete but is not"


def test_a_clock_stepping_back_or_a_forgotten_day_never_makes_an_incomplete_hour_look_complete() -> None:
    w = world(horizon_hours())
    loader = w.loader(lookback_hours=1)  # days beyond the lookback are listed by backfill passes only
    loader.run_once()
    assert_known_complete_is_true(w, loader)
    committed = loader._passes[0][0]
    assert not is_complete(committed.complete_hours, "ads_click", OPEN)
    w.clock.now = NOW + dt.timedelta(days=10)  # every day of the horizon leaves the backfill window: forgotten
    loader.run_once()
    assert not any(day <= NOW.date() for _, day in committed.complete_hours)
    w.clock.now = NOW + dt.timedelta(minutes=5)  # the clock steps back
    w.store.listed.clear()
    specs = len(w.runner.specs)
    loader.run_once()
    assert_known_complete_is_true(w, loader)
    assert not is_complete(committed.complete_hours, "ads_click", OPEN)
    assert f"staging/ads_click/{OPEN:%Y/%m/%d/%H}/" in [p for p, _ in w.store.listed], "the open hour is listed"
    assert f"logs/ads_click/{NOW - dt.timedelta(days=2):%Y/%m/%d}/" in [p for p, _ in w.store.listed], (
        "a clock behind the last backfill lists the backfill window again"
    )
    assert not w.complete_staging() & {u.split("/objects/", 1)[1][:-5] for u in w.fresh_uris()}
    assert all(s.kind == "fresh" for s in w.runner.specs[specs:])


def test_staging_prefixes() -> None:
    day = NOW.date()
    start, end = NOW - dt.timedelta(hours=48), NOW + dt.timedelta(hours=1)
    nothing = list(staging_prefixes("staging", ["c"], start, end, {}))
    assert nothing == [f"staging/c/{day - dt.timedelta(days=d):%Y/%m/%d}/" for d in (2, 1, 0)], "a day each"
    past = {("c", day - dt.timedelta(days=d)): frozenset(range(24)) for d in (1, 2)}
    assert list(staging_prefixes("staging", ["c"], start, end, {**past, ("c", day): frozenset({0, 5})})) == [
        f"staging/c/{day:%Y/%m/%d}/{h:02d}/" for h in range(24) if h not in (0, 5) and h <= 14
    ], "a day with a complete hour: its other hours up to the end's, one by one"
    assert list(staging_prefixes("staging", ["c"], start, end, {**past, ("c", day): frozenset(range(15))})) == []
    late = NOW.replace(hour=23)  # the end's hour is tomorrow's 00:00: tomorrow has no complete hour
    tomorrow = day + dt.timedelta(days=1)
    got = staging_prefixes("staging", ["c"], late, late + dt.timedelta(hours=1), {("c", day): frozenset(range(23))})
    assert list(got) == [f"staging/c/{day:%Y/%m/%d}/23/", f"staging/c/{tomorrow:%Y/%m/%d}/"]
