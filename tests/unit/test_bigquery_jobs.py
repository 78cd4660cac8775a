"""``LoadRunner`` against a fake BigQuery client: deterministic job ids, 409 = success only for a job that succeeded,
bounded retries, permanent failures recorded, outages reported as pending."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from replicator.bigquery import names
from replicator.bigquery.errors import LoadDenied, LoadFailed, LoadPending
from replicator.bigquery.jobs import LoadRunner, LoadSpec
from replicator.bigquery.metrics import LoaderMetrics
from replicator.store import MemoryStore

pytestmark = pytest.mark.unit
SPEC = LoadSpec("commit", "lp-commit-ds-x-2026112613-g0001-tok", ("gs://b/f.avro",), "p.ds.x__committed", "AVRO")


@dataclass
class FakeJob:
    job_id: str
    outcome: dict[str, str] | None  # None: success; else error_result
    running_polls: int = 0
    state: str = "RUNNING"
    errors: list[Any] = field(default_factory=list)

    @property
    def error_result(self) -> dict[str, str] | None:
        return self.outcome if self.state == "DONE" else None

    def reload(self, retry: Any = None) -> None:
        if self.running_polls > 0:
            self.running_polls -= 1
        else:
            self.state = "DONE"


class FakeClient:
    """Jobs by id, like BigQuery: a repeated id answers 409; ``script`` says how each new attempt ends."""

    def __init__(self, script: list[dict[str, str] | None], running_polls: int = 0) -> None:
        self.jobs: dict[str, FakeJob] = {}
        self.script = list(script)
        self.running_polls = running_polls
        self.inserts = 0
        self.unavailable = False
        self.forbidden: list[dict[str, str]] | None = None  # the errors of a 403 answer, when set
        self.locations: list[str | None] = []  # the location of every insert and get
        self.write_conflict = False  # local-bigquery's answer to racing writes, once

    def load_table_from_uri(
        self, uris: list[str], table: str, job_id: str, job_config: Any, retry: Any, location: str | None = None
    ) -> FakeJob:
        self.locations.append(location)
        if self.unavailable:
            raise gexc.ServiceUnavailable("down")  # type: ignore[no-untyped-call]
        if self.forbidden is not None:
            raise gexc.Forbidden("denied", errors=self.forbidden)  # type: ignore[no-untyped-call]
        if self.write_conflict:
            self.write_conflict = False
            raise gexc.BadRequest("Conflict on update!")  # type: ignore[no-untyped-call]
        if job_id in self.jobs:
            raise gexc.Conflict(f"Already Exists: Job {job_id}")  # type: ignore[no-untyped-call]
        self.inserts += 1
        job = FakeJob(job_id, self.script.pop(0), self.running_polls)
        self.jobs[job_id] = job
        return job

    def get_job(self, job_id: str, retry: Any = None, location: str | None = None) -> FakeJob:
        self.locations.append(location)
        return self.jobs[job_id]


def runner(client: FakeClient, store: MemoryStore | None = None, **kw: Any) -> tuple[LoadRunner, LoaderMetrics]:
    metrics = LoaderMetrics()
    r = LoadRunner(client, store or MemoryStore(), metrics, sleep=lambda s: None, poll_seconds=0, **kw)  # type: ignore[arg-type]
    return r, metrics


def test_first_load_creates_attempt_zero_and_a_repeat_is_a_409_success() -> None:
    client = FakeClient([None])
    r, metrics = runner(client)
    first = r.load(SPEC)
    second = r.load(SPEC)
    assert first.job_id == second.job_id == names.job_id(SPEC.job_base, 0)
    assert first.created_here and not second.created_here
    assert client.inserts == 1
    assert metrics.loads.labels("commit", "already_loaded")._value.get() == 1


def test_409_for_a_failed_job_is_not_success_and_the_next_attempt_runs() -> None:
    client = FakeClient([{"reason": "backendError", "message": "boom"}, None])
    r, metrics = runner(client)
    out = r.load(SPEC)
    assert out.attempts == 2 and out.job_id.endswith("-a1")
    again = r.load(SPEC)  # a crash-restart: a0 answers 409 + failed, a1 answers 409 + done
    assert again.job_id.endswith("-a1") and not again.created_here
    assert client.inserts == 2
    assert metrics.job_failures.labels("commit", "backendError")._value.get() == 2


def test_a_bad_file_is_given_up_at_once_and_recorded() -> None:
    client = FakeClient([{"reason": "invalid", "message": "cannot read header"}])
    store = MemoryStore()
    r, metrics = runner(client, store)
    with pytest.raises(LoadFailed) as info:
        r.load(SPEC)
    assert (info.value.reason, info.value.attempts) == ("invalid", 1)
    record = json.loads(store.read(names.error_record(SPEC.job_base)))
    assert record["error_result"]["message"] == "cannot read header" and record["uris"] == list(SPEC.uris)
    assert metrics.loads.labels("commit", "failed")._value.get() == 1
    with pytest.raises(LoadFailed):
        r.load(SPEC)
    assert client.inserts == 1, "a permanently failed load is never submitted again"


def test_retryable_failures_are_bounded_by_max_attempts() -> None:
    client = FakeClient([{"reason": "internalError", "message": "x"}] * 3)
    r, _ = runner(client, max_attempts=3)
    with pytest.raises(LoadFailed) as info:
        r.load(SPEC)
    assert info.value.attempts == 3 and client.inserts == 3


def test_outage_and_long_running_jobs_are_pending_not_failed() -> None:
    client = FakeClient([None], running_polls=10**6)
    client.unavailable = True
    r, _ = runner(client, wait_seconds=0.0)
    with pytest.raises(LoadPending):
        r.load(SPEC)
    client.unavailable = False
    with pytest.raises(LoadPending):  # created, still RUNNING past the wait
        r.load(SPEC)
    client.jobs[names.job_id(SPEC.job_base, 0)].running_polls = 0
    r2, _ = runner(client, wait_seconds=5.0)
    assert r2.load(SPEC).attempts == 1 and client.inserts == 1


def test_deleting_the_error_record_asks_for_a_retry_at_the_next_attempt() -> None:
    client = FakeClient([{"reason": "invalid", "message": "bad"}, None])
    store = MemoryStore()
    r, _ = runner(client, store)
    with pytest.raises(LoadFailed):
        r.load(SPEC)
    store.delete(names.error_record(SPEC.job_base))  # the operator fixed the file
    out = r.load(SPEC)
    assert out.job_id == names.job_id(SPEC.job_base, 1) and out.created_here
    assert client.inserts == 2


def test_jobs_are_inserted_and_fetched_in_the_datasets_location() -> None:
    """BigQuery finds a single-region job only with its location: the 409 check must send it."""
    client = FakeClient([None])
    r, _ = runner(client, location="europe-west4")
    r.load(SPEC)
    r.load(SPEC)  # 409 -> get_job
    assert client.locations == ["europe-west4", "europe-west4", "europe-west4"]


def test_a_403_is_pending_and_a_missing_permission_is_told_apart_from_a_quota() -> None:
    client = FakeClient([None])
    r, _ = runner(client)
    client.forbidden = [{"reason": "rateLimitExceeded", "message": "too many"}]
    with pytest.raises(LoadPending) as quota:
        r.load(SPEC)
    assert not isinstance(quota.value, LoadDenied) and quota.value.log_level == logging.WARNING
    client.forbidden = [{"reason": "accessDenied", "message": "no bigquery.jobs.create"}]
    with pytest.raises(LoadDenied, match="missing permission") as denied:
        r.load(SPEC)
    assert denied.value.log_level == logging.ERROR
    client.forbidden = None  # granted: the same job id loads
    assert r.load(SPEC).created_here


def test_the_emulators_write_conflict_is_pending_and_the_next_try_loads() -> None:
    client = FakeClient([None])
    r, _ = runner(client)
    client.write_conflict = True
    with pytest.raises(LoadPending, match="write conflict"):
        r.load(SPEC)
    assert r.load(SPEC).created_here and client.inserts == 1
