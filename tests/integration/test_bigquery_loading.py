"""BigQuery loading on the local cloud (local-bigquery + fake-gcs-server): fresh path, commits, late deltas,
crashes between a load and its bookkeeping, repeated loads, bad files, and the freshness bound.

Every test checks the user-facing view: COUNT(*) = COUNT(DISTINCT event_id) = the number of distinct events landed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from replicator.bigquery import names
from replicator.bigquery.errors import LoadFailed
from replicator.bigquery.jobs import LoadRunner, LoadSpec
from replicator.bigquery.loader import run_loader
from replicator.bigquery.metrics import LoaderMetrics
from replicator.bigquery.tables import ensure_tables
from replicator.records import encode_rows, event_to_row
from replicator.synth import make_envelope
from service.envelope import decode
from service.local.endpoints import Endpoints
from tests.integration.test_bigquery_support import BqEnv, ids, make_env

pytestmark = pytest.mark.integration
LOGPIPE = str(Path(sys.executable).with_name("logpipe"))


@pytest.fixture
def env(local_cloud: Endpoints) -> BqEnv:
    e = make_env(local_cloud)
    ensure_tables(e.bq, e.catalog, dataset=e.dataset)
    return e


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_fresh_then_commit_then_late_delta_shows_each_event_once(env: BqEnv) -> None:
    t = now()
    a = ids("a", 40)
    env.land("ads_click", a[:20], t)
    env.land("ads_click", a[20:], t)
    retry_env = env.land("ads_click", a[:5], t)  # a client retry through another front-end: same ids, new envelope
    env.land("trace_span", ids("t", 7), t)
    loader = env.loader()

    env.run(loader)  # fresh only: nothing is committed yet
    assert env.counts("ads_click") == (40, 40)
    assert env.counts("trace_span") == (7, 7)
    assert env.counts(names.committed_table("ads_click")) == (0, 0)

    assert env.commit("ads_click", t) == 1
    env.run(loader)
    assert env.counts(names.committed_table("ads_click")) == (40, 40)
    assert env.counts("ads_click") == (40, 40)
    assert env.fresh_count("core") == 0, "fresh rows of committed sources are deleted"
    assert not [n for n in _names(env) if n.startswith("bq/fresh/core/")], "and their batch objects too"
    assert retry_env

    late = ids("late", 9)
    env.land("ads_click", late + a[:3], t)  # late events, three of them duplicates of committed ones
    env.run(loader)
    assert env.counts("ads_click") == (40, 40), "the hour is complete (_SUCCESS): late rows wait for their delta"
    assert env.fresh_count("core") == 0, "the fresh pass lists only hours without _SUCCESS"
    assert env.commit("ads_click", t) == 1  # generation 2, a delta
    env.run(loader)
    assert env.counts(names.committed_table("ads_click")) == (49, 49)
    assert env.counts("ads_click") == (49, 49)
    assert env.fresh_count("core") == 0


def test_old_partitions_late_data_is_loaded_by_backfill_passes(env: BqEnv) -> None:
    old = now() - dt.timedelta(days=4)  # an event time the front-end accepts (7 days), outside the 72 h lookback
    first, late = ids("old", 6), ids("older", 4)
    env.land("ads_click", first, old)
    assert env.commit("ads_click", old) == 1
    loader = env.loader(backfill_interval_seconds=0.1)  # every pass a backfill pass
    env.run(loader)  # the first pass of a (re)started loader lists the backfill window
    assert env.counts(names.committed_table("ads_click")) == (6, 6)
    env.land("ads_click", late + first[:2], old)  # a spool replay: late events, two of them duplicates
    assert env.commit("ads_click", old) == 1  # generation 2, a delta into a 4-day-old partition
    env.run(loader)
    assert env.counts(names.committed_table("ads_click")) == (10, 10)
    assert env.counts("ads_click") == (10, 10)
    assert env.fresh_count("core") == 0, "older than the fresh horizon: never fresh rows"


def test_view_columns_match_committed_rows(env: BqEnv) -> None:
    t = now()
    env.land("ads_click", ["col-1"], t)
    loader = env.loader()
    env.run(loader)
    sql = "SELECT event_id, campaign_id, user_id, cost_micros, producer, payload FROM `{}.{}.ads_click`"
    fresh = [dict(r) for r in env.bq.query(sql.format(env.endpoints.project, env.dataset)).result()]
    env.commit("ads_click", t)
    env.run(loader)
    committed = [dict(r) for r in env.bq.query(sql.format(env.endpoints.project, env.dataset)).result()]
    assert fresh == committed
    assert fresh[0]["campaign_id"] == "c0" and fresh[0]["user_id"] == "u0" and fresh[0]["payload"]["seq"] == 0


@pytest.mark.parametrize("step", ["bq.commit.after_load", "bq.commit.after_delete"])
def test_crash_between_commit_load_and_bookkeeping_never_double_loads(env: BqEnv, step: str) -> None:
    t = now()
    events = ids("c", 30)
    env.land("login_event", events[:15], t)
    env.land("login_event", events[15:], t)
    env.commit("login_event", t)
    time.sleep(1.0)  # the slot closes
    crashed = subprocess.run(
        [LOGPIPE, *env.cli_args()], env={**os.environ, "LOGPIPE_BQ_CRASH_AT": step}, capture_output=True, timeout=120
    )
    assert crashed.returncode == 137, crashed.stderr.decode()[-2000:]
    assert not any(n.endswith(".loaded") and "/committed/" in n for n in _names(env)), "crashed before the marker"
    assert env.counts(names.committed_table("login_event")) == (30, 30)
    assert env.counts("login_event") == (30, 30)

    again = subprocess.run([LOGPIPE, *env.cli_args()], capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert env.counts(names.committed_table("login_event")) == (30, 30), "the repeated load answered 409"
    assert env.counts("login_event") == (30, 30)
    assert any(n.endswith("g0001.loaded") for n in _names(env))


def test_crash_after_fresh_load_before_marker_is_invisible_and_repaired(env: BqEnv) -> None:
    t = now()
    env.land("app_log", ids("f", 25), t)
    time.sleep(1.0)  # the slot closes
    crashed = subprocess.run(
        [LOGPIPE, *env.cli_args()],
        env={**os.environ, "LOGPIPE_BQ_CRASH_AT": "bq.fresh.after_load"},
        capture_output=True,
        timeout=120,
    )
    assert crashed.returncode == 137, crashed.stderr.decode()[-2000:]
    assert env.counts("app_log") == (25, 25)
    env.land("app_log", ids("g", 5), t)  # new data changes the next batch: the old one is resumed, not re-cut
    time.sleep(1.0)
    again = subprocess.run([LOGPIPE, *env.cli_args()], capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert env.counts("app_log") == (30, 30)
    assert env.fresh_count("bulk") == 30, "the resumed batch answered 409 instead of loading twice"


def test_two_loaders_racing_still_show_each_event_once(env: BqEnv) -> None:
    t = now()
    env.land("ads_click", ids("r", 50), t)
    first, second = env.loader(), env.loader()
    time.sleep(1.0)  # the slot closes
    threads = [threading.Thread(target=w.run_once) for w in (first, second)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert env.counts("ads_click") == (50, 50)
    assert env.fresh_count("core") == 50, "both workers cut the same batch of the closed slot: one load"
    env.commit("ads_click", t)
    threads = [threading.Thread(target=w.run_once) for w in (first, second)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert env.counts(names.committed_table("ads_click")) == (50, 50)
    assert env.counts("ads_click") == (50, 50)


def test_repeated_load_is_409_and_counts_once(env: BqEnv) -> None:
    rows = [event_to_row(e, env.catalog.category("ads_click"), "env-x") for e in _events("rep", 12)]
    env.store.create_if_absent("manual/rep.avro", encode_rows(rows, env.catalog.category("ads_click")))
    metrics = LoaderMetrics()
    runner = LoadRunner(env.bq, env.store, metrics, wait_seconds=60)
    spec = LoadSpec(
        kind="commit",
        job_base=f"test-rep-{env.dataset}",
        uris=(f"gs://{env.bucket}/manual/rep.avro",),
        table=f"{env.endpoints.project}.{env.dataset}.{names.committed_table('ads_click')}",
        source_format="AVRO",
    )
    first = runner.load(spec)
    second = runner.load(spec)
    assert first.created_here and not second.created_here and first.job_id == second.job_id
    assert env.counts(names.committed_table("ads_click")) == (12, 12)


def test_bad_file_fails_visibly_and_is_not_retried_forever(env: BqEnv) -> None:
    env.store.create_if_absent("manual/bad.avro", b"this is not avro")
    metrics = LoaderMetrics()
    runner = LoadRunner(env.bq, env.store, metrics, wait_seconds=60, sleep=lambda s: None)
    spec = LoadSpec(
        kind="commit",
        job_base=f"test-bad-{env.dataset}",
        uris=(f"gs://{env.bucket}/manual/bad.avro",),
        table=f"{env.endpoints.project}.{env.dataset}.{names.committed_table('ads_click')}",
        source_format="AVRO",
    )
    with pytest.raises(LoadFailed) as info:
        runner.load(spec)
    assert info.value.reason == "invalid" and info.value.attempts == 1
    record = json.loads(env.store.read(names.error_record(spec.job_base)))
    assert record["job_id"] == names.job_id(spec.job_base, 0) and record["uris"] == list(spec.uris)
    assert metrics.loads.labels("commit", "failed")._value.get() == 1
    with pytest.raises(LoadFailed):  # asking again finds the failed job (409 + DONE with error), not a success
        runner.load(spec)
    assert env.counts(names.committed_table("ads_click")) == (0, 0)


def test_freshness_bound_with_the_loader_running(env: BqEnv) -> None:
    metrics = LoaderMetrics()
    stop = threading.Event()
    clients = (env.bq, env.store)
    cfg = env.config(interval_seconds=2.0)
    thread = threading.Thread(target=run_loader, args=(cfg, stop), kwargs={"metrics": metrics, "clients": clients})
    thread.start()
    try:
        env.land("ads_click", ["warm-up"], now())  # wait for start-up (ensure_tables), then measure steady state
        while env.counts("ads_click") != (1, 1):
            time.sleep(0.5)
        latencies = []
        total = 1
        for round_ in range(3):
            batch = ids(f"fr{round_}", 20)
            acked = time.monotonic()
            env.land("ads_click", batch, now())
            total += len(batch)
            while env.counts("ads_click") != (total, total):
                assert time.monotonic() - acked < 60, "not queryable within 60 s"
                time.sleep(0.2)
            latencies.append(time.monotonic() - acked)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert max(latencies) < 30, latencies
    assert env.counts("ads_click") == (61, 61)
    assert len(metrics.ingest_to_queryable) == 61


def _names(env: BqEnv) -> list[str]:
    return [o.name for o in env.store.list("bq/")]


def _events(prefix: str, n: int) -> list:  # type: ignore[type-arg]
    enc = make_envelope("ads_click", ids(prefix, n), now())
    return list(decode(enc.data, enc.attributes).events)


def test_logpipe_query_prints_the_view_as_a_table(env: BqEnv) -> None:
    env.land("login_event", ["q-1", "q-2", "q-3"], now())
    env.run(env.loader())
    sql = f"SELECT event_id, producer FROM `{env.dataset}.login_event` ORDER BY event_id"
    ep = env.endpoints
    done = subprocess.run(
        [LOGPIPE, "query", sql, "--project", ep.project, "--bigquery-url", ep.bigquery_url],
        capture_output=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    assert "event_id" in out and "q-1" in out and "q-3" in out and "synth" in out and "3 row(s) shown" in out
    bad = subprocess.run([LOGPIPE, "query", "SELECT nope FROM x", "--project", ep.project, "--bigquery-url",
                          ep.bigquery_url], capture_output=True, timeout=120)  # fmt: skip
    assert bad.returncode == 1 and "query failed" in bad.stdout.decode()
