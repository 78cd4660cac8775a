"""The fresh path during a BigQuery outage (G4): batches that cannot load hold their staging names, so past
``BatchLimits.max_unloaded_objects`` no new batch is cut and nothing is converted until loads go through again; then
every object is batched and loaded. Latency only: nothing is skipped for good."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from replicator.bigquery import names
from replicator.bigquery.committed import Target
from replicator.bigquery.errors import LoadPending
from replicator.bigquery.fresh import BatchLimits, FreshLoader
from replicator.bigquery.jobs import LoadOutcome, LoadSpec
from replicator.bigquery.metrics import LoaderMetrics
from replicator.landing import Lander
from replicator.metrics import Metrics
from replicator.store import MemoryStore
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

    def load(self, spec: LoadSpec) -> LoadOutcome:
        if self.down:
            raise LoadPending("BigQuery unreachable")
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
    w.minute()
    w.minute()
    assert len(set(w.runner.loaded)) == 600, "after the outage every object of the hour is loaded"
