"""``LoadRunner``: run one load exactly once, however often it is asked, by however many workers.

Job ids are ``<job_base>-a<N>``: ``job_base`` is derived from what is loaded (names.py), N counts attempts. For each N
in order the runner creates job N, or, when BigQuery answers 409, fetches the existing job N, and waits for it:
  * DONE without error  -> success (whoever created it; the rows are in once, because a job id runs once);
  * DONE with a reason in ``RETRYABLE_REASONS`` or ``QUOTA_REASONS`` -> a failed load job writes nothing, so job N+1
    may run, once job N has been over for ``backoff(N)`` (2^N s, at most ``max_backoff_seconds``). Before that the
    load is ``LoadPending``. A quota failure is pending at once (the table's daily quota does not refill in seconds);
    another retryable one is retried within the call while its backoff is short (``attempts_per_call``);
  * DONE with any other reason (``invalid``: a bad file, ``notFound``: a missing file, ...) -> given up for good;
  * still running past ``wait_seconds``, or BigQuery unreachable -> ``LoadPending``: ask again later, nothing is
    consumed (the next call finds the same job N).
Since job N+1 is created only after job N is seen failed, at most one job of a load ever succeeds. A crash at any
point leaves jobs that the next call finds by id; the backoff is read from the jobs' own end times, so nothing is
kept in memory that matters, and a restarted loader resumes where the last one stood.

Giving up (``LoadFailed``) happens after a permanent reason, or when retryable failures have gone on for longer than
``give_up_after_seconds`` since attempt 0 was created (default 48 h: a spent per-table quota refills within a day), or
after ``max_attempts`` failed jobs (a hard cap for when BigQuery reports no job times). It is made visible three
ways: a metric (``logpipe_bq_loads_total{outcome="failed"}``), an ERROR log line, and an error record object
``bq/errors/<job_base>.json`` with the job id, the URIs and BigQuery's errors. The record is also the switch for a
retry: while it exists, a failed job found again is final; once an operator deletes it (after fixing the cause), the
next call continues at the next attempt number, within ``max_attempts``.
"""

from __future__ import annotations

import datetime as dt
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


#: A 403 from an API call with one of these reasons is a quota or rate limit: pending, it passes by itself.
_PENDING_403_REASONS = frozenset({"quotaExceeded", "rateLimitExceeded"})
#: Job error reasons of a spent quota (BigQuery runs the job and fails it, e.g. the per-table daily load limit):
#: retryable, but not within seconds, so the load is pending until the job's backoff has passed.
QUOTA_REASONS = frozenset({"quotaExceeded"})


def _when(job: Any, field: str) -> dt.datetime | None:
    """The job's ``created`` or ``ended`` time (aware), or None where BigQuery (or a fake) reports none."""
    value = getattr(job, field, None)
    return value if isinstance(value, dt.datetime) and value.tzinfo is not None else None


def _pending_for_403(jid: str, exc: gexc.Forbidden) -> LoadPending:
    """A 403 is a quota (``LoadPending``: it passes by itself) or a missing permission (``LoadDenied``)."""
    reasons = {str(e.get("reason", "")) for e in (exc.errors or []) if isinstance(e, dict)}
    if reasons & _PENDING_403_REASONS:
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
        max_attempts: Hard cap on the jobs of one load (failed ones, before it is given up and recorded).
        attempts_per_call: Jobs one ``load`` call may create before it answers ``LoadPending``.
        give_up_after_seconds: How long retryable failures may go on, from attempt 0's creation, before the load is
            given up.
        max_backoff_seconds: Cap on the wait between a failed job's end and the next attempt.
        api_retry_seconds: Bound on the client's own retries of one API call.
        wait_seconds: How long ``load`` waits for a running job before raising ``LoadPending``.
        location: The dataset's location, for inserting and fetching jobs. BigQuery finds a job of a single-region
            dataset only with its location, so without it a repeated job id (409) could never be checked.
        clock: The wall clock (aware UTC), compared with the jobs' creation and end times.
    """

    def __init__(
        self,
        client: bigquery.Client,
        store: ObjectStore,
        metrics: LoaderMetrics,
        *,
        max_attempts: int = 64,
        attempts_per_call: int = 3,
        give_up_after_seconds: float = 48 * 3600.0,
        max_backoff_seconds: float = 3600.0,
        api_retry_seconds: float = 30.0,
        wait_seconds: float = 300.0,
        poll_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        location: str | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._client = client
        self._location = location
        self._store = store
        self._metrics = metrics
        self._max_attempts = max_attempts
        self._per_call = attempts_per_call
        self._give_up_after = dt.timedelta(seconds=give_up_after_seconds)
        self._max_backoff = max_backoff_seconds
        self._retry = Retry(timeout=api_retry_seconds, initial=0.2, maximum=5.0)
        self._wait_seconds = wait_seconds
        self._poll = poll_seconds
        self._sleep = sleep
        self._monotonic = monotonic
        self._clock = clock

    def backoff(self, attempt: int) -> float:
        """Seconds between the end of failed job ``attempt`` and the creation of the next one."""
        return float(min(self._max_backoff, 2.0 ** min(attempt, 30)))

    def load(self, spec: LoadSpec) -> LoadOutcome:
        """Make sure ``spec`` is loaded exactly once. Blocks up to about ``wait_seconds`` per attempt.

        Raises:
            LoadPending: BigQuery unreachable, the job still running, or a retryable failure whose backoff has not
                passed yet; call again later.
            LoadFailed: given up for good (after recording it; see the module docstring).
        """
        started = self._monotonic()
        first_created: dt.datetime | None = None
        created_now = 0
        for attempt in range(self._max_attempts):
            jid = names.job_id(spec.job_base, attempt)
            job, created = self._create_or_get(jid, spec)
            created_now += created
            self._wait(job)
            if attempt == 0:
                first_created = _when(job, "created")
            err = job.error_result
            if not err:
                self._metrics.loads.labels(spec.kind, "loaded" if created else "already_loaded").inc()
                self._metrics.load_seconds.labels(spec.kind).observe(self._monotonic() - started)
                return LoadOutcome(jid, attempt + 1, created)
            reason = str(err.get("reason", "unknown"))
            self._metrics.job_failures.labels(spec.kind, reason).inc()
            log.warning("load job %s failed: %s: %s", jid, reason, err.get("message"))
            # A failure found again without its record: the operator deleted the record to ask for a retry (or a
            # crash came before it was written). Then go on with the next attempt number at once.
            final = created or self._store.stat(names.error_record(spec.job_base)) is not None
            if reason not in RETRYABLE_REASONS | QUOTA_REASONS:
                if final:
                    self._give_up(spec, job, jid, attempt + 1)
                continue
            now = self._clock()
            if first_created is not None and now - first_created > self._give_up_after:
                if final:
                    self._give_up(spec, job, jid, attempt + 1)
                continue
            if attempt + 1 >= self._max_attempts:
                break
            ended = _when(job, "ended") or _when(job, "created")
            if ended is not None:
                wait = self.backoff(attempt) - (now - ended).total_seconds()
            else:  # no job times: back off after a job of this call; a job found again is from an earlier call
                wait = self.backoff(attempt) if created else 0.0
            if wait <= 0 and not (created and created_now >= self._per_call):
                continue
            if reason in QUOTA_REASONS or created_now >= self._per_call or wait > 30.0:
                raise LoadPending(f"{jid} failed ({reason}); the next attempt in {max(wait, 0.0):.0f}s or later")
            self._sleep(wait)
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
