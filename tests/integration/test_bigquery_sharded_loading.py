"""BigQuery loading of a partition finalized in shards, on the local cloud (local-bigquery + fake-gcs-server): the
statement C3 runs for every manifest (``committed.fresh_delete_sql``) executes on the emulator and deletes only the
fresh rows whose event is committed, so the view shows every event exactly once while the shards commit one after
the other; each shard's generation 1 is loaded under its own job id and marker.
"""

from __future__ import annotations

import datetime as dt

import pytest

from replicator.bigquery import names
from replicator.bigquery.tables import ensure_tables
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.layout import Partition, Shard, shard_of
from replicator.metrics import Metrics
from service.catalog import Catalog
from service.local.endpoints import Endpoints
from tests.integration.test_bigquery_support import BqEnv, ids, make_env

pytestmark = pytest.mark.integration
SHARDS = 2


@pytest.fixture
def env(local_cloud: Endpoints) -> BqEnv:
    e = make_env(local_cloud)
    ensure_tables(e.bq, e.catalog, dataset=e.dataset)
    return e


def sharded(catalog: Catalog) -> Catalog:
    cats = tuple(
        c.model_copy(update={"finalize_shards": SHARDS}) if c.name == "ads_click" else c for c in catalog.categories
    )
    return catalog.model_copy(update={"categories": cats})


def fresh_ids(env: BqEnv) -> set[str]:
    sql = f"SELECT event_id FROM `{env.endpoints.project}.{env.dataset}.{names.fresh_table('core')}`"
    return {r["event_id"] for r in env.bq.query(sql).result()}


@pytest.mark.parametrize("fresh_first", [True, False])
def test_shards_commit_one_after_the_other_and_the_view_shows_each_event_once(env: BqEnv, fresh_first: bool) -> None:
    """``fresh_first``: the fresh path loaded the objects before shard 0 committed (shard 0's delete keeps shard 1's
    rows); else after (the fresh path still loads them, and shard 1's delete removes shard 0's rows too)."""
    t = dt.datetime.now(dt.UTC)
    p = Partition.of("ads_click", t)
    events = ids("s", 40)
    own = {k: {e for e in events if shard_of(e, SHARDS) == k} for k in range(SHARDS)}
    assert all(own.values()), "both shards get events"
    env.land("ads_click", events[:25], t)
    env.land("ads_click", events[25:], t)
    fin = Finalizer(env.store, sharded(env.catalog), Metrics(), FinalizeSettings(writer="test"))
    shards = fin.shards(p)
    assert shards == Shard.all(SHARDS)
    loader = env.loader()
    if fresh_first:
        env.run(loader)
        assert fresh_ids(env) == set(events)

    assert len(fin.finalize_shard(p, shards[0])) == 1
    env.run(loader)
    committed = names.committed_table("ads_click")
    assert env.counts(committed) == (len(own[0]), len(own[0]))
    assert env.counts("ads_click") == (40, 40), "shard 1's events are shown through the fresh table"
    assert fresh_ids(env) == (own[1] if fresh_first else set(events)), "no fresh row of an uncommitted event deleted"

    assert len(fin.finalize_shard(p, shards[1])) == 1
    env.run(loader)
    assert env.counts(committed) == (40, 40)
    assert env.counts("ads_click") == (40, 40)
    assert fresh_ids(env) == set(), "every committed event's fresh rows are deleted"
    for shard in shards:
        assert env.store.stat(names.committed_marker(p, 1, shard)) is not None
    assert not list(env.store.list("bq/fresh/core/")), "F4 cleaned the batches once every shard was loaded"
