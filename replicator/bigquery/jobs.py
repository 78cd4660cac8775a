"""``LoadRunner``: run one load exactly once, however often it is asked, by however many workers.

Job ids are ``<job_base>-a<N>``: ``job_base`` is derived from what is loaded (names.py), N counts attempts. For each N
in order the runner creates job N, or, when BigQuery answers 409, fetches the existing job N, and waits for it:
  * DONE without error  -> success (whoever created it; the rows are in once, because a job id runs once);
  * DONE with a reason in ``RETRYABLE_REASONS`` -> a failed load job writes nothing, so job N+1 may run;
  * DONE with any other reason (``invalid``: a bad file, ``notFound``: a missing file, ...) -> given up for good;
  * still running past ``wait_seconds``, or BigQuery unreachable -> ``LoadPending``: ask again later, nothing is
    consumed (the next call finds the same job N).
Since job N+1 is created only after job N is seen failed, at most one job of a load ever succeeds. A crash at any
point leaves jobs that the next call finds by id; nothing is kept in memory that matters.

Giving up (``LoadFailed``) happens after a permanent reason or ``max_attempts`` failed jobs. It is made visible three
ways: a metric (``logpipe_bq_loads_total{outcome="failed"}``), an ERROR log line, and an error record object
``bq/errors/<job_base>.json`` with the job id, the URIs and BigQuery's errors. The record is also the switch for a
retry: while it exists, a permanently failed job found again is final; once an operator deletes it (after fixing the
cause), the next call continues at the next attempt number, within ``max_attempts``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import bigquery

from replicator.bigquery import names
from replicator.bigquery.errors import LoadDenied, LoadFailed, LoadPending
from replicator.bigquery.metrics import LoaderMetrics
from replicator.store import ObjectStore

log = logging.getLogger(__name__)

#: Job error reasons after which a new attempt (a new job id) may succeed.
RETRYABLE_REASONS = frozenset(
    {
        "backendError",
        "internalError",
        "rateLimitExceeded",
        "jobBackendError",
        "jobInternalError",
        "jobRateLimitExceeded",
        "timeout",
        "stopped",
    }
)
#: API call errors (creating or fetching a job) that mean "try again later", not "this load is bad". A 403
#: (``Forbidden``) is caught before these: quotaExceeded / rateLimitExceeded on jobs.insert come as 403, and so does
#: a missing permission, which is also pending (granting it fixes the load) but must be told apart in the logs.
_UNREACHABLE = (
    gexc.ServerError,
    gexc.TooManyRequests,
    gexc.RetryError,
    ConnectionError,
    TimeoutError,
    OSError,
)


_QUOTA_REASONS = frozenset({"quotaExceeded", "rateLimitExceeded"})


def _pending_for_403(jid: str, exc: gexc.Forbidden) -> LoadPending:
    """A 403 is a quota (``LoadPending``: it passes by itself) or a missing permission (``LoadDenied``)."""
    reasons = {str(e.get("reason", "")) for e in (exc.errors or []) if isinstance(e, dict)}
    if reasons & _QUOTA_REASONS:
        return LoadPending(f"{jid}: BigQuery quota exceeded: {exc!r}")
    return LoadDenied(f"{jid}: BigQuery denied access (a missing permission?): {exc!r}")


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """One load: ``uris`` into ``table`` (``project.dataset.table``), identified by ``job_base``."""

    kind: str
    job_base: str
    uris: tuple[str, ...]
    table: str
    source_format: str
    allow_field_addition: bool = False


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    job_id: str
    attempts: int
    created_here: bool


class LoadRunner:
    """Runs ``LoadSpec``s; see the module docstring. Thread-safe (no mutable state); no I/O in the constructor.

    Args:
        client: The BigQuery client (injected).
        store: Where error records go (the landing bucket).
        api_retry_seconds: Bound on the client's own retries of one API call.
        wait_seconds: How long ``load`` waits for a running job before raising ``LoadPending``.
        location: The dataset's location, for inserting and fetching jobs. BigQuery finds a job of a single-region
            dataset only with its location, so without it a repeated job id (409) could never be checked.
    """

    def __init__(
        self,
        client: bigquery.Client,
        store: ObjectStore,
        metrics: LoaderMetrics,
        *,
        max_attempts: int = 5,
        api_retry_seconds: float = 30.0,
        wait_seconds: float = 300.0,
        poll_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        location: str | None = None,
    ) -> None:
        self._client = client
        self._location = location
        self._store = store
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._retry = Retry(timeout=api_retry_seconds, initial=0.2, maximum=5.0)
        self._wait_seconds = wait_seconds
        self._poll = poll_seconds
        self._sleep = sleep
        self._monotonic = monotonic

    def load(self, spec: LoadSpec) -> LoadOutcome:
        """Make sure ``spec`` is loaded exactly once. Blocks up to about ``wait_seconds`` per attempt.

        Raises:
            LoadPending: BigQuery unreachable or the job still running; call again later.
            LoadFailed: given up for good (after recording it; see the module docstring).
        """
        started = self._monotonic()
        for attempt in range(self._max_attempts):
            jid = names.job_id(spec.job_base, attempt)
            job, created = self._create_or_get(jid, spec)
            self._wait(job)
            err = job.error_result
            if not err:
                self._metrics.loads.labels(spec.kind, "loaded" if created else "already_loaded").inc()
                self._metrics.load_seconds.labels(spec.kind).observe(self._monotonic() - started)
                return LoadOutcome(jid, attempt + 1, created)
            reason = str(err.get("reason", "unknown"))
            self._metrics.job_failures.labels(spec.kind, reason).inc()
            log.warning("load job %s failed: %s: %s", jid, reason, err.get("message"))
            # A permanent failure found again without its record: the operator deleted the record to ask for a
            # retry (or a crash came before it was written). Then go on with the next attempt number.
            permanent = reason not in RETRYABLE_REASONS
            if permanent and (created or self._store.stat(names.error_record(spec.job_base)) is not None):
                self._give_up(spec, job, jid, attempt + 1)
            if attempt + 1 < self._max_attempts:
                self._sleep(min(30.0, 2.0**attempt))
        self._give_up(spec, job, jid, self._max_attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    def _config(self, spec: LoadSpec) -> bigquery.LoadJobConfig:
        cfg = bigquery.LoadJobConfig(
            source_format=spec.source_format,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
            use_avro_logical_types=True,
        )
        if spec.allow_field_addition:
            cfg.schema_update_options = [bigquery.SchemaUpdateOption.ALLOW_FIELD_ADDITION]
        return cfg

    def _create_or_get(self, jid: str, spec: LoadSpec) -> tuple[Any, bool]:
        try:
            try:
                job = self._client.load_table_from_uri(
                    list(spec.uris),
                    spec.table,
                    job_id=jid,
                    job_config=self._config(spec),
                    retry=self._retry,
                    location=self._location,
                )
                return job, True
            except gexc.Conflict:
                return self._client.get_job(jid, retry=self._retry, location=self._location), False
            except gexc.BadRequest as exc:
                # local-bigquery answers two racing inserts of one job id with 400 "Duplicate key" instead of 409,
                # and a write that races another in its DuckDB store with 400 "Conflict on update!" (try again).
                text = str(exc).lower()
                if "conflict on update" in text:
                    raise LoadPending(f"{jid}: the store had a write conflict: {exc!r}") from exc
                if "duplicate key" not in text:
                    raise
                return self._client.get_job(jid, retry=self._retry, location=self._location), False
        except gexc.Forbidden as exc:
            raise _pending_for_403(jid, exc) from exc
        except _UNREACHABLE as exc:
            raise LoadPending(f"{jid}: BigQuery unavailable: {exc!r}") from exc

    def _wait(self, job: Any) -> None:
        deadline = self._monotonic() + self._wait_seconds
        try:
            while job.state != "DONE":
                if self._monotonic() > deadline:
                    raise LoadPending(f"{job.job_id} still {job.state} after {self._wait_seconds:.0f}s")
                self._sleep(self._poll)
                job.reload(retry=self._retry)
        except gexc.Forbidden as exc:
            raise _pending_for_403(job.job_id, exc) from exc
        except _UNREACHABLE as exc:
            raise LoadPending(f"{job.job_id}: BigQuery unavailable: {exc!r}") from exc

    def _give_up(self, spec: LoadSpec, job: Any, jid: str, attempts: int) -> None:
        err = job.error_result or {}
        failure = LoadFailed(jid, str(err.get("reason", "unknown")), str(err.get("message", "")), attempts)
        record = {
            "job_id": jid,
            "kind": spec.kind,
            "table": spec.table,
            "uris": list(spec.uris),
            "attempts": attempts,
            "error_result": err,
            "errors": job.errors or [],
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            body = json.dumps(record, indent=1).encode()
            self._store.create_if_absent(names.error_record(spec.job_base), body, content_type="application/json")
        except Exception:  # the record is a courtesy; the metric and the log line below still report the failure
            log.exception("could not write the error record of %s", jid)
        self._metrics.loads.labels(spec.kind, "failed").inc()
        log.error("load given up: %s (record: %s)", failure, names.error_record(spec.job_base))
        raise failure
