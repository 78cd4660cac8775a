"""Finalizer passes list the staging days of the hot window; a full scan (first pass, then hourly) lists everything.

Staging objects stay 30 days, so listing all of ``staging/<category>/`` every 30 s cost what 30 days of traffic cost.
What must hold (docs/design.md, "Finalization"): the first pass of a process is full; the others list only the hot
window's days, whatever the number of old committed hours; late data into an old hour is committed by the next full
scan; a full scan that fails to list stays due; a partition that failed outside the window is retried.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from replicator.errors import StoreError
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Layout, Partition
from replicator.metrics import Metrics
from replicator.scan import NameSetDigest, ScanSchedule, hot_days, partitions_to_finalize
from replicator.store import MemoryStore, ObjectInfo
from replicator.synth import make_envelope
from service.catalog import load_catalog

pytestmark = pytest.mark.unit

CAT = load_catalog()
NOW = dt.datetime(2026, 11, 26, 15, 10, tzinfo=dt.UTC)
HOT = dt.timedelta(hours=6)
FULL = dt.timedelta(hours=1)
ROOT = "staging/ads_click/"
TODAY = "staging/ads_click/2026/11/26/"


class CountingStore(MemoryStore):
    """Records the staging prefixes a pass scans (a category or a day; not one partition's hour, which finalizing it
    lists) and how many objects those listings returned; ``fail_list`` / ``fail_read`` make the listings of (reads
    under) those prefixes raise ``StoreError`` once each."""

    def __init__(self) -> None:
        super().__init__()
        self.listed: list[str] = []
        self.objects_listed = 0
        self.fail_list: set[str] = set()
        self.fail_read: set[str] = set()

    def list(self, prefix: str, *, start_offset: str = "") -> Iterator[ObjectInfo]:
        if prefix in self.fail_list:
            self.fail_list.discard(prefix)
            raise StoreError("list", prefix, "injected", transient=True)
        scan = prefix.startswith("staging/") and prefix.count("/") <= 5  # a category or a day, not one hour
        if scan:
            self.listed.append(prefix)
        for info in super().list(prefix, start_offset=start_offset):
            self.objects_listed += scan
            yield info

    def read(self, name: str) -> bytes:
        for prefix in list(self.fail_read):
            if name.startswith(prefix):
                self.fail_read.discard(prefix)
                raise StoreError("read", name, "injected", transient=True)
        return super().read(name)

    def reset(self) -> None:
        self.listed.clear()
        self.objects_listed = 0


class World:
    def __init__(self, hot: dt.timedelta | None = HOT) -> None:
        self.now = NOW
        self.store = CountingStore()
        self.lander = Lander(self.store, [c.name for c in CAT.categories], Metrics())
        settings = FinalizeSettings(target_file_bytes=10_000, writer="test", hot_window=hot, full_scan_interval=FULL)
        self.fin = Finalizer(self.store, CAT, Metrics(), settings, clock=lambda: self.now)
        self.seq = 0

    def land(self, hour: dt.datetime, n: int = 1) -> None:
        for _ in range(n):
            self.seq += 1
            env = make_envelope("ads_click", [f"e{self.seq}"], hour + dt.timedelta(minutes=5))
            self.lander.land(env.data, env.attributes)

    def closable(self, p: Partition) -> bool:
        return self.now >= p.end + dt.timedelta(minutes=10)

    def run(self, after: dt.timedelta = dt.timedelta(seconds=30)) -> list[Partition]:
        self.now += after
        self.store.reset()
        committed = self.fin.run_pass(["ads_click"], self.closable)
        return sorted({Partition(m.category, m.partition_hour) for m in committed})


def _hours_back(first: int, last: int) -> list[dt.datetime]:
    top = NOW.replace(minute=0)
    return [top - dt.timedelta(hours=h) for h in range(first, last + 1)]


def test_after_the_first_pass_only_the_hot_days_are_listed_however_many_old_hours_there_are() -> None:
    w = World()
    old_hours = _hours_back(24, 24 * 10)  # 10 days of committed hours (what the 30-day lifecycle keeps, in small)
    for h in old_hours[: len(old_hours) // 2]:
        w.land(h, 3)
    for h in _hours_back(0, 4):  # the hot window: 10:00-15:00 of today
        w.land(h, 2)
    assert len(w.run(dt.timedelta(0))) == len(old_hours) // 2 + 4  # the first pass is full: every closable hour
    assert w.store.listed == [ROOT]

    assert w.run() == []
    assert w.store.listed == [TODAY], "a later pass lists only the hot window's day"
    per_pass = w.store.objects_listed
    assert per_pass == 5 * 2

    for h in old_hours[len(old_hours) // 2 :]:  # more old, committed hours (a full scan commits them)
        w.land(h, 3)
    assert len(w.run(FULL)) == len(old_hours) - len(old_hours) // 2 + 1  # and 15:00, closed meanwhile
    assert w.store.listed == [ROOT]
    assert w.run() == [] and w.store.listed == [TODAY]
    assert w.store.objects_listed == per_pass, "the listing per pass does not grow with old committed hours"


def test_a_window_across_midnight_lists_both_days() -> None:
    w = World()
    w.now = dt.datetime(2026, 11, 27, 2, 10, tzinfo=dt.UTC)
    w.land(dt.datetime(2026, 11, 26, 22, tzinfo=dt.UTC))
    assert w.run(dt.timedelta(0)) == [Partition("ads_click", dt.datetime(2026, 11, 26, 22, tzinfo=dt.UTC))]
    assert w.run() == [] and w.store.listed == ["staging/ads_click/2026/11/26/", "staging/ads_click/2026/11/27/"]
    assert hot_days(dt.datetime(2026, 11, 26, 23, 30, tzinfo=dt.UTC), HOT) == (
        dt.date(2026, 11, 26),
        dt.date(2026, 11, 27),  # now + 1 h: the front-end accepts event times up to an hour ahead
    )


def test_an_hour_closing_in_the_hot_window_commits_at_the_next_pass() -> None:
    w = World()
    w.run(dt.timedelta(0))  # the first (full) pass of the process, on an empty bucket
    w.land(NOW.replace(minute=0))  # 15:00-16:00, open
    assert w.run() == []
    assert w.run(dt.timedelta(minutes=60)) == [Partition("ads_click", NOW.replace(minute=0))]
    assert w.store.listed == [ROOT], "an hour later: the full scan"
    w.land(NOW.replace(minute=0))  # late data into a complete hour of the hot window: the next pass
    assert w.run() == [Partition("ads_click", NOW.replace(minute=0))] and w.store.listed == [TODAY]


def test_late_data_into_an_old_complete_hour_commits_at_the_next_full_scan_and_a_failed_one_stays_due() -> None:
    w = World()
    old = NOW.replace(minute=0) - dt.timedelta(days=3)
    w.land(old)
    assert w.run(dt.timedelta(0)) == [Partition("ads_click", old)]
    w.land(old)  # a spool replay into the 3-day-old, complete hour
    for _ in range(3):
        assert w.run(dt.timedelta(minutes=15)) == [], "not before the next full scan"
        assert w.store.listed == [TODAY]

    w.store.fail_list.add(ROOT)  # the full scan's listing fails
    with pytest.raises(StoreError):
        w.run(dt.timedelta(minutes=15))  # 1 h after the first pass: a full scan is due
    assert w.run() == [Partition("ads_click", old)], "the next pass is full again and commits the delta"
    assert w.store.listed == [ROOT]
    assert w.run() == [] and w.store.listed == [TODAY]


def test_the_first_pass_of_a_process_is_full() -> None:
    w = World()
    old = NOW.replace(minute=0) - dt.timedelta(days=9)
    w.land(old)
    restarted = World()
    restarted.store, restarted.lander = w.store, w.lander
    restarted.fin = Finalizer(
        w.store, CAT, Metrics(), FinalizeSettings(writer="r", hot_window=HOT), clock=lambda: restarted.now
    )
    assert restarted.run(dt.timedelta(0)) == [Partition("ads_click", old)]
    assert restarted.store.listed[0] == ROOT


def test_a_partition_that_failed_outside_the_window_is_retried_by_the_next_pass() -> None:
    w = World()
    old = NOW.replace(minute=0) - dt.timedelta(days=2)
    w.land(old)
    w.store.fail_read.add(f"{Layout().staging_prefix}/{Partition('ads_click', old).path}/")
    assert w.run(dt.timedelta(0)) == [] and w.fin.failures == 1
    assert w.run() == [Partition("ads_click", old)], "retried directly, not an hour later"
    assert w.store.listed == [TODAY]
    assert w.run() == [] and w.store.listed == [TODAY], "done: no more retries"


def test_without_a_hot_window_every_pass_is_full() -> None:
    w = World(hot=None)
    for _ in range(3):
        w.run()
        assert w.store.listed == [ROOT]


def test_a_partial_listing_forgets_only_complete_partitions_inside_its_days() -> None:
    store = MemoryStore()
    old, hot = Partition("ads_click", NOW - dt.timedelta(days=2)), Partition("ads_click", NOW.replace(minute=0))
    complete = {old: NameSetDigest.of(["x"]), hot: NameSetDigest.of(["y"])}  # neither has staging objects any more
    days = hot_days(NOW, HOT)
    assert partitions_to_finalize(store, "ads_click", lambda p: True, complete, days=days) == []
    assert set(complete) == {old}, "the old entry waits for the next full scan"
    assert partitions_to_finalize(store, "ads_click", lambda p: True, complete) == []
    assert complete == {}


def test_the_schedule_is_full_first_then_every_interval_and_after_the_clock_steps_back() -> None:
    s = ScanSchedule(HOT, FULL)
    assert s.days(NOW) is None
    s.completed(NOW, None)
    assert s.days(NOW + dt.timedelta(minutes=59)) == (NOW.date(),)
    assert s.days(NOW + FULL) is None
    assert s.days(NOW - dt.timedelta(seconds=1)) is None, "a clock that stepped back: full"
    s.completed(NOW + dt.timedelta(minutes=5), (NOW.date(),))  # a partial pass does not move the last full scan
    assert s.last_full == NOW


# --- configuration: the worker's finalizer gets the window; it must hold the hours that close -----------------------


def test_the_worker_finalizer_gets_the_hot_window_and_the_full_scan_interval() -> None:
    from replicator.config import ReplicatorConfig
    from tests.unit.replicator_support import offline_worker

    cfg = ReplicatorConfig(project="p", bucket="bkt")
    assert (cfg.finalize_hot_hours, cfg.finalize_full_scan_seconds) == (6.0, 3600.0)
    cfg = ReplicatorConfig(project="p", bucket="bkt", finalize_hot_hours=3, finalize_full_scan_seconds=5)
    w = offline_worker(cfg)
    assert w.finalizer.settings.hot_window == dt.timedelta(hours=3)
    assert w.finalizer.settings.full_scan_interval == dt.timedelta(seconds=5)


def test_a_hot_window_that_cannot_hold_the_closing_hours_is_refused_with_its_flag() -> None:
    from replicator.config import ReplicatorConfig
    from replicator.errors import ConfigError

    env = {"GOOGLE_CLOUD_PROJECT": "p", "LOGPIPE_BUCKET": "bkt"}
    with pytest.raises(ConfigError, match=r"^--finalize-hot-hours must exceed the lateness \+ 1 h \(3 h; got 3\)$"):
        ReplicatorConfig.from_sources({"finalize_hot_hours": 3, "lateness_seconds": 7200}, env)
    ReplicatorConfig.from_sources({"finalize_hot_hours": 3.5, "lateness_seconds": 7200}, env)
    ReplicatorConfig.from_sources({"finalize_hot_hours": 1, "finalize": False}, env)  # no finalizer loop: no window
    with pytest.raises(ConfigError, match="--finalize-full-scan-seconds"):
        ReplicatorConfig.from_sources({"finalize_full_scan_seconds": 0}, env)
