"""The fresh path during a BigQuery outage (G4): batches that cannot load hold their staging names, so past
``BatchLimits.max_unloaded_objects`` no new batch is cut and nothing is converted until loads go through again; then
every object is batched and loaded. Latency only: nothing is skipped for good."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from replicator.bigquery import names
from replicator.bigquery.committed import Target
from replicator.bigquery.errors import LoadFailed, LoadPending
from replicator.bigquery.fresh import BatchLimits, FreshLoader
from replicator.bigquery.jobs import LoadOutcome, LoadSpec
from replicator.bigquery.metrics import LoaderMetrics
from replicator.landing import Lander
from replicator.metrics import Metrics
from replicator.store import MemoryStore, ObjectInfo
from replicator.synth import make_envelope
from service.catalog import load_catalog

pytestmark = pytest.mark.unit
CAT = load_catalog()
START = dt.datetime(2026, 11, 26, 13, 30, 10, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


class Runner:
    """BigQuery that is down (``LoadPending``) while ``down``; records the uris of every loaded batch."""

    def __init__(self) -> None:
        self.down = True
        self.loaded: list[str] = []

    fail_next = 0

    def load(self, spec: LoadSpec) -> LoadOutcome:
        if self.down:
            raise LoadPending("BigQuery unreachable")
        if self.fail_next:
            self.fail_next -= 1
            raise LoadFailed(spec.job_base, "invalid", "a bad file", 1)
        self.loaded += spec.uris
        return LoadOutcome(names.job_id(spec.job_base, 0), 1, True)


class World:
    def __init__(self, limits: BatchLimits) -> None:
        self.clock = Clock()
        self.store = MemoryStore(clock=self.clock)
        self.lander = Lander(self.store, [c.name for c in CAT.categories], Metrics())
        self.runner = Runner()
        self.metrics = LoaderMetrics()
        kw: dict[str, Any] = dict(store=self.store, runner=self.runner, metrics=self.metrics)
        self.loader = FreshLoader(
            tier="core", categories=CAT.categories_in("core"), horizon=dt.timedelta(hours=6), clock=self.clock,
            limits=limits, target=Target("p", "ds", "b"), **kw,
        )  # fmt: skip
        self.landed = 0

    def land(self, n: int) -> None:
        for _ in range(n):
            self.landed += 1
            enc = make_envelope("ads_click", [f"e{self.landed}"], self.clock.now)
            self.lander.land(enc.data, enc.attributes)

    def minute(self) -> int:
        """Let a minute pass (the last slot closes), convert ahead, then run a pass; returns the events it loaded."""
        self.clock.now += dt.timedelta(minutes=1)
        self.loader.convert(frozenset())
        return self.loader.run(frozenset(), frozenset())

    def held(self) -> int:
        """Staging names the loader holds: in batches, and converted (ahead, or for a batch)."""
        return len({s for b in self.loader._batches.values() for s in b.sources} | self.loader._conv.converted)

    def paused(self) -> float:
        return self.metrics.registry.get_sample_value("logpipe_bq_fresh_paused", {"tier": "core"}) or 0.0


def test_an_outage_pauses_new_batches_at_the_limit_and_a_recovery_loads_everything() -> None:
    w = World(BatchLimits(max_objects=2, max_bytes=10**9, max_unloaded_objects=4))
    w.land(10)
    w.minute()
    assert len(w.loader._batches) == 2 and w.paused() == 1, "two batches of 2 reach the limit: no third"
    w.land(3)
    w.minute()
    assert len(w.loader._batches) == 2, "still down: the same two batches are retried, no new one"
    assert w.loader.convert(frozenset()) == 0, "paused: nothing converted ahead"
    w.runner.down = False
    w.minute()
    assert w.paused() == 0
    for _ in range(3):  # a pass cuts at most the limit's worth of new objects: the rest in the next ones
        w.minute()
    assert len(w.runner.loaded) == 13 == len(set(w.runner.loaded)), "every landed object loaded once"


def test_the_fresh_paths_memory_stays_flat_through_a_long_outage() -> None:
    limits = BatchLimits(max_objects=5, max_bytes=10**9, max_unloaded_objects=20)
    w = World(limits)
    peak = 0
    for _ in range(60):  # an hour of outage, 10 envelopes a minute
        w.land(10)
        w.minute()
        peak = max(peak, w.held())
    assert peak <= limits.max_unloaded_objects + limits.max_objects + 10, f"held {peak} names"
    w.runner.down = False
    for _ in range(40):
        w.minute()
    assert len(set(w.runner.loaded)) == 600 == len(w.runner.loaded), "after the outage every object loads once"


class ListingStore(MemoryStore):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.staging_lists = 0

    def list(self, prefix: str, *, start_offset: str = "") -> Iterator[ObjectInfo]:
        self.staging_lists += prefix.startswith("staging/")
        for info in super().list(prefix, start_offset=start_offset):
            self.staging_yielded += prefix.startswith("staging/")
            yield info

    staging_yielded = 0


def test_a_paused_pass_lists_no_staging_and_resumes_only_at_half_the_limit() -> None:
    w = World(BatchLimits(max_objects=2, max_bytes=10**9, max_unloaded_objects=4))
    store = ListingStore(w.clock)  # the same world on a store that counts staging listings
    w.store, w.lander.__dict__["_store"] = store, store
    w.loader._store = w.loader._conv._store = store
    w.land(10)
    w.minute()
    assert w.paused() == 1
    w.land(5)
    store.staging_lists = 0
    w.minute()
    assert store.staging_lists == 0, "a paused pass listed the open hours (and held every candidate)"
    w.runner.down = False
    w.runner.loaded.clear()
    w.loader._limits = BatchLimits(max_objects=2, max_bytes=10**9, max_unloaded_objects=3)  # 4 held > 3 // 2
    w.loader._failed.clear()
    w.runner.fail_next = 1  # one of the two batches loads, the other is given up: 2 names stay unloaded
    w.minute()
    assert w.paused() == 1, "2 names unloaded of a limit of 3: not yet half"


def test_batches_given_up_are_forgotten_once_their_hours_complete_and_not_resurrected() -> None:
    w = World(BatchLimits(max_objects=2, max_bytes=10**9, max_unloaded_objects=4))
    w.runner.down = False
    w.runner.fail_next = 2  # both batches of the first pass are given up (a bad file, say)
    w.land(4)
    w.minute()
    assert w.paused() == 1 and len(w.loader._failed) == 2
    hour = START.replace(minute=0)
    complete = {("ads_click", hour.date()): frozenset({hour.hour})}
    w.clock.now += dt.timedelta(minutes=1)
    w.loader.run(frozenset(), frozenset(), complete)
    assert w.paused() == 0 and w.loader._batches == {}, "the given-up batches of a complete hour still count"
    assert not [n for n in w.store.names() if n.startswith("bq/fresh/core/") and n.endswith(".json")]
    restarted = World(BatchLimits(max_objects=2, max_bytes=10**9, max_unloaded_objects=4))
    restarted.store = w.store
    restarted.loader._store = restarted.loader._conv._store = w.store
    restarted.clock.now = w.clock.now
    restarted.loader.run(frozenset(), frozenset(), complete)
    assert restarted.runner.loaded == [] and restarted.loader._batches == {}, "a restart tried them again"


def test_records_of_days_before_the_window_found_at_a_restart_do_not_pause() -> None:
    w = World(BatchLimits(max_objects=2, max_bytes=10**9, max_unloaded_objects=2))
    w.runner.down = False
    old = [f"staging/ads_click/2026/11/20/10/old-{i}.pb.zst" for i in range(3)]  # 6 days ago; never loaded
    w.store.create_if_absent(names.fresh_record("core", "oldbatch"), json.dumps({"sources": old}).encode())
    w.land(1)
    w.minute()
    assert w.paused() == 0, "a batch the pass forgets anyway paused the fresh path"
    assert len(w.runner.loaded) == 1


def test_a_pass_takes_at_most_the_limits_worth_of_new_objects() -> None:
    """G4 for one pass: after an outage the open hours' whole backlog is waiting; a pass holds (lists into its
    candidates) at most what the limit leaves, and later passes take the rest."""
    w = World(BatchLimits(max_objects=2, max_bytes=10**9, max_unloaded_objects=4))
    store = ListingStore(w.clock)
    w.store, w.lander.__dict__["_store"] = store, store
    w.loader._store = w.loader._conv._store = store
    w.runner.down = False
    w.land(10)
    w.clock.now += dt.timedelta(minutes=1)
    w.loader.run(frozenset(), frozenset())  # no conversion ahead: the pass itself lists the 10 objects
    assert store.staging_yielded == 4, "the pass read the whole listing into its candidates"
    assert len(w.runner.loaded) == 4
    for _ in range(3):
        w.minute()
    assert len(set(w.runner.loaded)) == 10
