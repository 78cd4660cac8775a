"""The committed pass on the in-memory store, with a recording fake runner and a fake client for the DELETE: one load
per manifest generation, job ids from (category, hour, generation), markers only after the fresh rows are deleted."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from replicator.bigquery import names
from replicator.bigquery.committed import CommittedLoader, Target
from replicator.bigquery.jobs import LoadOutcome, LoadSpec
from replicator.bigquery.metrics import LoaderMetrics
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.store import MemoryStore
from replicator.synth import make_envelope
from service.catalog import load_catalog

pytestmark = pytest.mark.unit
CAT = load_catalog()
NOW = dt.datetime(2026, 11, 26, 13, 30, tzinfo=dt.UTC)
P = Partition("ads_click", NOW.replace(minute=0))


class FakeRunner:
    def __init__(self) -> None:
        self.specs: list[LoadSpec] = []

    def load(self, spec: LoadSpec) -> LoadOutcome:
        self.specs.append(spec)
        return LoadOutcome(names.job_id(spec.job_base, 0), 1, True)


class FakeClient:
    def __init__(self) -> None:
        self.deleted: list[list[str]] = []
        self.fail = False

    def query(self, sql: str, job_config: Any) -> Any:
        if self.fail:
            raise RuntimeError("concurrent update")
        assert sql.startswith("DELETE FROM `p.ds._fresh_core` WHERE source IN UNNEST(@sources)")
        self.deleted.append(list(job_config.query_parameters[0].values))
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


def new_loader(store: MemoryStore, runner: FakeRunner, client: FakeClient) -> CommittedLoader:
    """A loader process: nothing in memory but what it reads from the store."""
    return CommittedLoader(
        store=store, client=client, runner=runner, metrics=LoaderMetrics(), target=Target("p", "ds", "b"),  # type: ignore[arg-type]
        tier="core", categories=CAT.categories_in("core"), lookback=dt.timedelta(hours=3), clock=lambda: NOW,
    )  # fmt: skip


def land(lander: Lander, ids: list[str]) -> None:
    enc = make_envelope("ads_click", ids, NOW)
    lander.land(enc.data, enc.attributes)


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
