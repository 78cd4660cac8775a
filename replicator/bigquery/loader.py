"""The loader loop: every ``interval_seconds``, per tier, the committed pass then the fresh pass.

Entry point: ``run_loader(config, stop_event)``; ``logpipe load`` runs it in the foreground, ``logpipe replicate``
may run it in a thread. Any number of loaders may run at once (one per replicator worker): correctness comes from
deterministic job ids and create-if-absent bookkeeping, never from being the only one.

Crash safety: the loader keeps nothing in memory that the bucket and BigQuery's job list cannot rebuild; a SIGKILL at
any point is repaired by the next pass of any loader (see committed.py and fresh.py for the steps).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from replicator.bigquery.committed import DEFAULT_BACKFILL, DEFAULT_BACKFILL_INTERVAL, CommittedLoader, Target
from replicator.bigquery.fresh import BatchLimits, FreshLoader
from replicator.bigquery.jobs import LoadRunner
from replicator.bigquery.metrics import LoaderMetrics
from replicator.bigquery.tables import ensure_tables
from replicator.bigquery.views import DEFAULT_HORIZON_HOURS
from replicator.crash import NEVER, CrashPoints
from replicator.store import ObjectStore
from service.catalog import Catalog, load_catalog

log = logging.getLogger(__name__)
CRASH_STEPS = frozenset(
    {"bq.commit.after_load", "bq.commit.after_delete", "bq.fresh.after_files", "bq.fresh.after_load"}
)


class LoaderConfig(BaseModel):
    """Everything the loader needs, read once at the entry point. Defaults give the documented behaviour.

    Attributes:
        project: GCP project of the BigQuery jobs (and the emulators).
        bucket: The landing bucket.
        bigquery_url / gcs_url: Emulator endpoints; None means the real services.
        catalog_path: The catalog; None means the default one.
        dataset: Overrides the catalog's dataset.
        tiers: The tiers to load; empty means all.
        interval_seconds: Length of a fresh time slot, and time between two passes; passes start
            ``fresh_grace_seconds`` after each slot ends. Fresh data is queryable within about ``interval_seconds``
            + grace + load time of being landed. Keep >= 60 in production: one fresh load job per tier and slot must
            stay under BigQuery's 1,500 load jobs per table and day (docs/design.md).
        fresh_grace_seconds: How long after a slot's end its objects are batched (clock skew, uploads finishing);
            at most half the interval.
        convert_interval_seconds: Between passes, new staging objects are converted to Avro this often, so a pass
            only has to load.
        fresh_convert_lookback_seconds: Each conversion lists only the staging objects whose envelope id (UUIDv7)
            was made this long ago or less, not two whole hours; 0 lists whole hours. What it skips (spool replays,
            a backlog older than this) is converted by the pass instead: later, never lost (fresh.py).
        horizon_hours: Fresh rows older than this are not shown by the views (committed rows always are). The
            staging objects of its days are all the fresh path lists (of hours without ``_SUCCESS`` only), so only
            the sources of their manifests of such hours are kept, and those of loaded manifests until the fresh
            pass has seen them once.
        lookback_hours: How far back every committed pass looks for manifests not yet loaded (cheap: a few days).
        backfill_hours: How far back the first committed pass, and then one every ``backfill_interval_seconds``,
            looks: late data commits delta manifests into old partitions (event times up to 7 days old are
            accepted; a spool replay after an outage delivers old events late). Manifests older than this are never
            loaded and are forgotten (G4). At least ``lookback_hours`` and ``horizon_hours``: the fresh path relies
            on the committed path knowing every manifest of its horizon.
        backfill_interval_seconds: Time between two backfill passes; a manifest of a partition older than the
            lookback is loaded within about this long of its commit.
        max_attempts: Hard cap on the failed load jobs of one load before it is given up and recorded.
        give_up_after_hours: How long a load may keep failing for retryable reasons (a spent quota, a backend
            error), from its first job, before it is given up and recorded; until then it is pending and retried
            with a backoff of up to an hour (jobs.py). At least a day, so that a spent daily quota refills first.
        max_unloaded_fresh_objects: The fresh path cuts no new batch, and converts nothing, while its batches not
            loaded (pending or failed) hold this many staging objects (about 200 B of memory each): a BigQuery
            outage then costs latency, not memory (G4; fresh.py ``BatchLimits``).
        job_prefix: First part of every job id; change it to load a dataset again from scratch.
        crash_at: ``<step>[:<nth>]`` crash injection for fault tests (steps in ``CRASH_STEPS``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str
    bucket: str
    bigquery_url: str | None = None
    gcs_url: str | None = None
    catalog_path: str | None = None
    dataset: str | None = None
    tiers: tuple[str, ...] = ()
    interval_seconds: float = Field(default=60.0, gt=0)
    fresh_grace_seconds: float = Field(default=2.0, ge=0)
    convert_interval_seconds: float = Field(default=5.0, gt=0)
    fresh_convert_lookback_seconds: float = Field(default=120.0, ge=0)
    horizon_hours: int = Field(default=DEFAULT_HORIZON_HOURS, ge=1)
    lookback_hours: int = Field(default=72, ge=1)
    backfill_hours: int = Field(default=DEFAULT_BACKFILL // dt.timedelta(hours=1), ge=1)
    backfill_interval_seconds: float = Field(default=DEFAULT_BACKFILL_INTERVAL.total_seconds(), gt=0)
    max_attempts: int = Field(default=64, ge=1)
    give_up_after_hours: float = Field(default=48.0, ge=24.0)
    job_wait_seconds: float = Field(default=300.0, gt=0)
    job_prefix: str = Field(default="logpipe", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    max_batch_objects: int = Field(default=5_000, ge=1)
    max_batch_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_unloaded_fresh_objects: int = Field(default=200_000, ge=1)
    crash_at: str | None = None

    @model_validator(mode="after")
    def _windows_nest(self) -> LoaderConfig:
        if self.backfill_hours < self.lookback_hours:
            raise ValueError(
                f"backfill_hours ({self.backfill_hours}) must be >= lookback_hours ({self.lookback_hours}): a backfill"
                " pass lists the lookback window too. To load older manifests, raise backfill_hours"
                " (`logpipe load --once --backfill-hours N`: the first pass lists the backfill window)"
            )
        if self.backfill_hours < self.horizon_hours:
            raise ValueError(
                f"backfill_hours ({self.backfill_hours}) must be >= horizon_hours ({self.horizon_hours}): manifests"
                " older than the backfill window are forgotten, and the fresh path must know every manifest of its"
                " horizon, or it would load committed staging objects again"
            )
        return self

    @property
    def grace(self) -> dt.timedelta:
        return dt.timedelta(seconds=min(self.fresh_grace_seconds, self.interval_seconds / 2))

    @property
    def convert_lookback(self) -> dt.timedelta | None:
        """``FreshLoader``'s ``convert_lookback``: None (whole hours) for 0."""
        seconds = self.fresh_convert_lookback_seconds
        return dt.timedelta(seconds=seconds) if seconds > 0 else None

    def crash_points(self) -> CrashPoints:
        if not self.crash_at:
            return NEVER
        step, _, nth = self.crash_at.partition(":")
        if step not in CRASH_STEPS:
            raise ValueError(f"unknown crash step {step!r}; known: {sorted(CRASH_STEPS)}")
        return CrashPoints(step, int(nth) if nth else 1)


class Loader:
    """Both passes for the configured tiers. Build with injected clients; ``run_once`` does one pass of each."""

    def __init__(
        self,
        config: LoaderConfig,
        catalog: Catalog,
        bq_client: Any,
        store: ObjectStore,
        metrics: LoaderMetrics | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        location: str | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.metrics = metrics or LoaderMetrics()
        target = Target(config.project, config.dataset or catalog.dataset, config.bucket, config.job_prefix)
        runner = LoadRunner(
            bq_client,
            store,
            self.metrics,
            max_attempts=config.max_attempts,
            give_up_after_seconds=config.give_up_after_hours * 3600.0,
            wait_seconds=config.job_wait_seconds,
            location=location,
        )
        crash = config.crash_points()
        limits = BatchLimits(config.max_batch_objects, config.max_batch_bytes, config.max_unloaded_fresh_objects)
        tiers = config.tiers or tuple(t.name for t in catalog.tiers)
        self._passes: list[tuple[CommittedLoader, FreshLoader]] = []
        for tier in tiers:
            cats = catalog.categories_in(tier)
            if not cats:
                continue
            common: dict[str, Any] = dict(
                store=store, runner=runner, metrics=self.metrics, target=target, tier=tier, categories=cats,
                clock=clock, crash=crash,
            )  # fmt: skip
            committed = CommittedLoader(
                client=bq_client,
                lookback=dt.timedelta(hours=config.lookback_hours),
                backfill=dt.timedelta(hours=config.backfill_hours),
                backfill_interval=dt.timedelta(seconds=config.backfill_interval_seconds),
                fresh_horizon=dt.timedelta(hours=config.horizon_hours),
                **common,
            )
            fresh = FreshLoader(
                horizon=dt.timedelta(hours=config.horizon_hours),
                slot=dt.timedelta(seconds=config.interval_seconds),
                grace=config.grace,
                limits=limits,
                convert_lookback=config.convert_lookback,
                **common,
            )
            self._passes.append((committed, fresh))

    def convert_once(self) -> int:
        """Convert new staging objects ahead of their pass. Returns the number converted. Raises store errors."""
        return sum(fresh.convert(c.committed_sources, c.complete_hours) for c, fresh in self._passes)

    def run_once(self) -> tuple[int, int]:
        """One committed pass and one fresh pass per tier. Returns (manifests loaded, fresh events loaded).

        Raises object-store errors (``replicator.errors.StoreError``), after every tier had its pass: one tier's
        failure (e.g. an unreadable object of its own) does not hold back the others. BigQuery trouble only delays
        (logged)."""
        manifests = events = 0
        failed: Exception | None = None
        for committed, fresh in self._passes:
            try:
                manifests += committed.run()
                done = committed.done_sources
                events += fresh.run(committed.committed_sources, done, committed.complete_hours)
                waiting = fresh.waiting_hours() if committed.wants_waiting else None  # costs a walk of the batches
                committed.handed_over(done, waiting)  # F4 noted them: keep the open hours' names (known.py, "Memory")
                if committed.any_unread:  # found loaded (a restart): read those the batches wait on, for the next F4
                    committed.read_unread(waiting)
            except Exception as exc:
                log.error("tier %s: pass failed, the other tiers go on: %r", committed.tier, exc)
                failed = failed or exc
        if failed is not None:
            raise failed
        return manifests, events


def build_clients(config: LoaderConfig) -> tuple[Any, ObjectStore]:
    """The BigQuery client and the landing bucket's store, from the config (emulator URLs when set)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery, storage

    from replicator.store_gcs import GcsStore

    if config.bigquery_url:
        bq = bigquery.Client(
            project=config.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=config.bigquery_url),
        )
    else:
        bq = bigquery.Client(project=config.project)
    if config.gcs_url:
        gcs = storage.Client(
            project=config.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=config.gcs_url),
        )
    else:
        gcs = storage.Client(project=config.project)
    return bq, GcsStore(gcs, config.bucket)


def run_loader(
    config: LoaderConfig,
    stop_event: threading.Event,
    *,
    metrics: LoaderMetrics | None = None,
    clients: tuple[Any, ObjectStore] | None = None,
    run_first_pass: bool = True,
) -> None:
    """Ensure the tables, then run passes every ``interval_seconds`` until ``stop_event`` is set (with
    ``run_first_pass``, one pass runs even if it is set already: ``logpipe load --once``).

    Blocks. Raises ``SchemaIncompatible`` at start when the catalog cannot be applied, and ``CatalogError`` for a bad
    catalog. Errors inside a pass are logged and the pass is retried at the next interval (bounded per pass by the
    store's and the runner's deadlines), so a BigQuery or GCS outage delays loading but never stops the loop.
    """
    catalog = load_catalog(config.catalog_path)
    bq, store = clients or build_clients(config)
    location = ensure_tables(bq, catalog, dataset=config.dataset, horizon_hours=config.horizon_hours)
    loader = Loader(config, catalog, bq, store, metrics, location=location)
    first = run_first_pass
    while first or not stop_event.is_set():
        first = False
        try:
            manifests, events = loader.run_once()
            if manifests or events:
                log.info("pass: %d manifest(s) committed, %d fresh event(s) loaded", manifests, events)
        except Exception:
            log.exception("loader pass failed; retrying at the next interval")
        target = time.time() + seconds_to_next_pass(time.time(), config.interval_seconds, config.grace.total_seconds())
        while (remaining := target - time.time()) > 0:
            if stop_event.wait(min(config.convert_interval_seconds, remaining)):
                break
            if target - time.time() > config.convert_interval_seconds / 2:  # convert ahead, unless the pass is due
                try:
                    loader.convert_once()
                except Exception:
                    log.exception("converting staging objects failed; retrying")


def seconds_to_next_pass(now: float, interval: float, grace: float) -> float:
    """Passes start ``grace`` seconds after each slot end (slots: multiples of ``interval`` since the epoch), so every
    worker batches a slot right after it closed."""
    next_start = (now - grace) // interval * interval + interval + grace
    return max(0.0, next_start - now)
