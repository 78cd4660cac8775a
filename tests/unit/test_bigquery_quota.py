"""A load job that BigQuery runs and fails with ``quotaExceeded`` (the per-table daily load limit, which failed jobs
count against) is pending, not given up: a later pass, once the quota has refilled, makes the next attempt. Other
retryable failures are pending across passes too, with a backoff read from the jobs' end times, and are given up only
after ``give_up_after_seconds`` (docs/design.md "Quota arithmetic")."""

from __future__ import annotations

import datetime as dt

import pytest

from replicator.bigquery import names
from replicator.bigquery.committed import CommittedLoader, Target
from replicator.bigquery.errors import LoadFailed, LoadPending
from replicator.bigquery.jobs import LoadRunner
from replicator.bigquery.metrics import LoaderMetrics
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.metrics import Metrics
from replicator.store import MemoryStore
from tests.unit.test_bigquery_committed import CAT, NOW, P, land
from tests.unit.test_bigquery_committed import FakeClient as DeleteClient
from tests.unit.test_bigquery_jobs import SPEC, FakeClient, runner

pytestmark = pytest.mark.unit
QUOTA = {
    "reason": "quotaExceeded",
    "message": "Quota exceeded: Your table exceeded quota for imports or query appends per table.",
}


def test_a_job_failed_for_quota_is_pending_and_loads_once_the_quota_refills() -> None:
    """Attempt a0 is created; BigQuery runs it and fails it with quotaExceeded. LoadPending, and a later call (even
    of a new process), once the quota has refilled, submits a1 and loads."""
    client = FakeClient([QUOTA, None])
    store = MemoryStore()
    r, _ = runner(client, store)
    with pytest.raises(LoadPending):
        r.load(SPEC)
    restarted, _ = runner(client, store)  # the next day: the quota has refilled
    out = restarted.load(SPEC)
    assert out.created_here and client.inserts == 2


def test_a_committed_generation_refused_for_quota_is_loaded_by_a_later_pass() -> None:
    """The same through the committed pass: generation 1 of a partition meets a spent per-table quota; a later pass
    of the same process loads it and writes its ``.loaded`` marker (without the fix it was given up, so its events
    never reached ``<category>__committed``: G1)."""
    store = MemoryStore(clock=lambda: NOW)
    lander = Lander(store, [c.name for c in CAT.categories], Metrics())
    fin = Finalizer(store, CAT, Metrics(), FinalizeSettings(writer="test"), clock=lambda: NOW)
    land(lander, ["q1", "q2"])
    fin.finalize_partition(P)
    bq = FakeClient([QUOTA, None])

    def process() -> CommittedLoader:
        run = LoadRunner(bq, store, LoaderMetrics(), sleep=lambda s: None, poll_seconds=0)  # type: ignore[arg-type]
        return CommittedLoader(
            store=store, client=DeleteClient(), runner=run, metrics=LoaderMetrics(),  # type: ignore[arg-type]
            target=Target("p", "ds", "b"), tier="core", categories=CAT.categories_in("core"), clock=lambda: NOW,
            lookback=dt.timedelta(hours=3),
        )  # fmt: skip

    first = process()
    first.run()  # the quota is spent: a0 fails with quotaExceeded
    first.run()  # a later pass of the same process, after the quota refilled
    second = process()  # or a restarted loader
    second.run()
    assert store.stat(names.committed_marker(P, 1)) is not None, "generation 1 is never loaded"
    assert bq.inserts == 2


T0 = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def timed(client: FakeClient, clock: Clock) -> None:
    """Give every job ``created``/``ended`` times, like BigQuery: both at the clock's current time."""
    real = client.load_table_from_uri

    def insert(*args: object, **kw: object) -> object:
        job = real(*args, **kw)  # type: ignore[arg-type]
        job.created = job.ended = clock.now  # type: ignore[attr-defined]
        return job

    client.load_table_from_uri = insert  # type: ignore[method-assign]


def test_quota_waits_for_the_backoff_read_from_the_failed_jobs_end_time() -> None:
    clock = Clock()
    client = FakeClient([QUOTA, QUOTA, None])
    timed(client, clock)
    r, _ = runner(client, clock=clock)
    with pytest.raises(LoadPending, match="quotaExceeded"):
        r.load(SPEC)
    with pytest.raises(LoadPending):  # a0 ended 0 s ago: its 1 s backoff has not passed
        r.load(SPEC)
    assert client.inserts == 1
    clock.now += dt.timedelta(seconds=1)
    with pytest.raises(LoadPending):  # a1 created, quota again
        r.load(SPEC)
    clock.now += dt.timedelta(seconds=1)
    with pytest.raises(LoadPending):  # a1's backoff is 2 s
        r.load(SPEC)
    clock.now += dt.timedelta(seconds=1)
    assert r.load(SPEC).job_id.endswith("-a2") and client.inserts == 3


def test_retryable_failures_are_pending_across_calls_and_given_up_only_after_the_window() -> None:
    clock = Clock()
    backend = {"reason": "backendError", "message": "x"}
    client = FakeClient([backend] * 20)
    timed(client, clock)
    store = MemoryStore()
    r, metrics = runner(client, store, clock=clock, attempts_per_call=2, give_up_after_seconds=3600.0)
    with pytest.raises(LoadPending):  # a0 fails, sleep 1 s (not really), a1 fails: the call's 2 jobs are used
        r.load(SPEC)
    assert client.inserts == 2
    for _ in range(5):  # an hour of passes: pending, never recorded, one more job per passed backoff
        clock.now += dt.timedelta(minutes=12)
        with pytest.raises(LoadPending):
            r.load(SPEC)
    assert store.stat(names.error_record(SPEC.job_base)) is None
    clock.now += dt.timedelta(minutes=1)  # a0 was created more than an hour ago
    with pytest.raises(LoadFailed):
        r.load(SPEC)
    assert store.stat(names.error_record(SPEC.job_base)) is not None
    assert metrics.loads.labels("commit", "failed")._value.get() == 1
