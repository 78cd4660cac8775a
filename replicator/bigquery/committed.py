"""Committed path: load each manifest generation of a tier's categories into ``<category>__committed``, once.

One pass (``CommittedLoader.run``), in numbered steps; a crash after any step is repaired by the next pass:
  C1. List the manifests of the lookback window (``logs/<category>/YYYY/MM/DD/``), read the new ones (immutable, so
      cached), and skip those with a ``.loaded`` marker. The first pass of a process, and then one pass every
      ``backfill_interval``, lists the longer backfill window instead: late data (an event_time up to 7 days old, a
      spool replay after an outage) commits delta manifests into partitions older than the lookback (G1).
  C2. Load each remaining manifest's files with ``LoadRunner`` (job id from category, hour, generation, token). A
      repeat after a crash answers 409 and is recognised as done: the committed table gets each generation once.
  C3. Delete the fresh rows the loaded manifests cover (``DELETE ... WHERE source IN UNNEST(@sources)``: one DML
      per pass and tier). Only an optimisation: the view already prefers committed rows; this keeps the fresh table
      (and so every query of the view) small. Idempotent.
  C4. Write the ``.loaded`` markers (create-if-absent). They only save work: a lost marker costs one 409.
A manifest without files (a delta whose events were all duplicates) has nothing to load and goes straight to C3.

Memory (G4): what a pass learns is kept per (category, UTC day) and dropped once the day is older than the backfill
window, which no scan lists again; so ``committed_sources`` covers every manifest of the backfill window, which must
contain the fresh path's horizon (``LoaderConfig`` checks it).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from google.cloud import bigquery

from replicator.bigquery import names
from replicator.bigquery.errors import LoadFailed, LoadPending
from replicator.bigquery.jobs import LoadRunner, LoadSpec
from replicator.bigquery.metrics import LoaderMetrics
from replicator.crash import NEVER, CrashPoints
from replicator.errors import ObjectNotFound
from replicator.layout import Layout, Partition, manifest_generation
from replicator.manifest import Manifest, ManifestError
from replicator.store import ObjectStore
from service.catalog import Category, FileFormat

log = logging.getLogger(__name__)
_FORMATS = {FileFormat.AVRO: "AVRO", FileFormat.JSONL_GZ: "NEWLINE_DELIMITED_JSON"}
_DELETE_CHUNK = 10_000
#: The front-end accepts event times up to 7 days old (``event_time_past_s``); their partitions commit after the
#: finalizer's lateness, and a spool replay may deliver them later still: 7 days + 1 day of margin.
DEFAULT_BACKFILL = dt.timedelta(hours=192)
DEFAULT_BACKFILL_INTERVAL = dt.timedelta(hours=1)


def days_between(start: dt.datetime, end: dt.datetime) -> Iterator[dt.date]:
    """Every UTC date from ``start`` to ``end`` inclusive."""
    d, last = start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date()
    while d <= last:
        yield d
        d += dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a tier loads: ``project.dataset``, the bucket, and the job-id prefix."""

    project: str
    dataset: str
    bucket: str
    job_prefix: str = "logpipe"

    def table(self, name: str) -> str:
        return f"{self.project}.{self.dataset}.{name}"


@dataclass(slots=True)
class _Day:
    """What the passes learned of one category's UTC day; forgotten as a whole when the day leaves the backfill
    window."""

    markers_listed: bool = False
    manifests: dict[str, Manifest] = field(default_factory=dict)  # manifest name -> manifest (immutable: read once)
    done: set[str] = field(default_factory=set)  # ``.loaded`` markers
    failed: set[str] = field(default_factory=set)  # manifests whose load was given up (recorded by the runner)


class CommittedLoader:
    """The committed path of one tier. Not thread-safe: one pass at a time per instance. No I/O in the constructor.

    ``lookback``: the window every pass lists. ``backfill`` (>= ``lookback``, else ``ValueError``): the window the
    first pass and then one pass every ``backfill_interval`` list, and the one whose manifests are kept in memory.
    """

    def __init__(
        self,
        *,
        store: ObjectStore,
        client: bigquery.Client,
        runner: LoadRunner,
        metrics: LoaderMetrics,
        target: Target,
        tier: str,
        categories: tuple[Category, ...],
        lookback: dt.timedelta,
        clock: Callable[[], dt.datetime],
        backfill: dt.timedelta = DEFAULT_BACKFILL,
        backfill_interval: dt.timedelta = DEFAULT_BACKFILL_INTERVAL,
        layout: Layout | None = None,
        crash: CrashPoints = NEVER,
    ) -> None:
        if backfill < lookback:
            raise ValueError(f"the backfill window ({backfill}) must contain the lookback window ({lookback})")
        self._store, self._client, self._runner, self._metrics = store, client, runner, metrics
        self._target, self._tier, self._categories = target, tier, categories
        self._lookback, self._clock, self._crash = lookback, clock, crash
        self._backfill, self._backfill_interval = backfill, backfill_interval
        self._layout = layout or Layout()
        self._days: dict[tuple[str, dt.date], _Day] = {}
        self._last_backfill: dt.datetime | None = None
        # Built on demand, dropped on every change: the fresh path asks every few seconds (``convert``).
        self._committed_cache: frozenset[str] | None = None
        self._done_cache: frozenset[str] | None = None

    @property
    def backfill(self) -> dt.timedelta:
        """How far back manifests are listed (at times) and remembered: ``committed_sources`` covers this window."""
        return self._backfill

    @property
    def committed_sources(self) -> frozenset[str]:
        """Staging objects consumed by any known manifest of the backfill window: the fresh path leaves these alone."""
        if self._committed_cache is None:
            self._committed_cache = frozenset(
                s for d in self._days.values() for m in d.manifests.values() for s in m.sources
            )
        return self._committed_cache

    @property
    def done_sources(self) -> frozenset[str]:
        """Staging objects whose manifest (of the backfill window) is loaded and whose fresh rows are deleted."""
        if self._done_cache is None:
            self._done_cache = frozenset(
                s
                for d in self._days.values()
                for m in d.manifests.values()
                if self._marker(m) in d.done
                for s in m.sources
            )
        return self._done_cache

    def _changed(self) -> None:
        self._committed_cache = self._done_cache = None

    def _forget_before(self, first_day: dt.date) -> None:
        """Drop every day before ``first_day`` (G4). No later scan lists them: the window only moves forward."""
        old = [key for key in self._days if key[1] < first_day]
        for key in old:
            del self._days[key]
        if old:
            self._changed()

    def _discover(self) -> list[tuple[str, Manifest, _Day]]:
        now = self._clock()
        wide = self._last_backfill is None or now - self._last_backfill >= self._backfill_interval
        self._forget_before((now - self._backfill).astimezone(dt.UTC).date())
        window = self._backfill if wide else self._lookback
        for c in self._categories:
            for day in days_between(now - window, now + dt.timedelta(hours=1)):
                known = self._days.setdefault((c.name, day), _Day())
                if not known.markers_listed:
                    for info in self._store.list(f"{names.committed_marker_dir(c.name)}{day:%Y/%m/%d}/"):
                        known.done.add(info.name)
                    known.markers_listed = True
                    self._changed()
                for info in self._store.list(f"{self._layout.logs_prefix}/{c.name}/{day:%Y/%m/%d}/"):
                    if info.name in known.manifests or manifest_generation(info.name) is None:
                        continue
                    try:
                        known.manifests[info.name] = Manifest.from_json(self._store.read(info.name))
                    except (ManifestError, ObjectNotFound) as exc:
                        log.error("skipping unreadable manifest %s: %s", info.name, exc)
                        continue
                    self._changed()
        if wide:  # only once the whole window is listed: a store error retries the backfill next pass
            self._last_backfill = now
        todo = [
            (n, m, d)
            for d in self._days.values()
            for n, m in d.manifests.items()
            if self._marker(m) not in d.done and n not in d.failed
        ]
        return sorted(todo, key=lambda t: t[0])

    def _marker(self, m: Manifest) -> str:
        return names.committed_marker(Partition(m.category, m.partition_hour), m.generation)

    def run(self) -> int:
        """One pass (C1-C4). Returns how many manifests it finished. Raises only on object-store errors."""
        todo = self._discover()
        by_name = {c.name: c for c in self._categories}
        loaded: list[tuple[Manifest, _Day]] = []
        pending = 0
        for name, m, day in todo:
            category = by_name[m.category]
            p = Partition(m.category, m.partition_hour)
            spec = LoadSpec(
                kind="commit",
                job_base=names.commit_job_base(self._target.job_prefix, self._target.dataset, p, m.generation, m.token),
                uris=tuple(f"gs://{self._target.bucket}/{f.name}" for f in m.files),
                table=self._target.table(names.committed_table(m.category)),
                source_format=_FORMATS[category.file_format],
                allow_field_addition=True,
            )
            if spec.uris:
                try:
                    self._runner.load(spec)
                except LoadPending as exc:
                    log.log(exc.log_level, "commit load pending: %s", exc)
                    pending += 1
                    continue
                except LoadFailed:
                    day.failed.add(name)
                    continue
            self._crash.point("bq.commit.after_load")
            loaded.append((m, day))
        self._metrics.pending.labels("commit").set(pending)
        if not loaded:
            return 0
        try:
            self._delete_fresh(sorted({s for m, _ in loaded for s in m.sources}))
        except Exception as exc:  # retried next pass: the loads above will answer 409
            log.warning("deleting committed fresh rows failed, retrying next pass: %r", exc)
            return 0
        self._crash.point("bq.commit.after_delete")
        now = self._clock()
        for m, day in loaded:
            self._store.create_if_absent(self._marker(m), b"", content_type="text/plain")
            day.done.add(self._marker(m))
            self._changed()
            created = dt.datetime.fromisoformat(m.created.replace("Z", "+00:00"))
            self._metrics.commit_latency.observe(max(0.0, (now - created).total_seconds()))
        return len(loaded)

    def _delete_fresh(self, sources: list[str]) -> None:
        table = self._target.table(names.fresh_table(self._tier))
        for i in range(0, len(sources), _DELETE_CHUNK):
            chunk = sources[i : i + _DELETE_CHUNK]
            cfg = bigquery.QueryJobConfig(query_parameters=[bigquery.ArrayQueryParameter("sources", "STRING", chunk)])
            self._client.query(f"DELETE FROM `{table}` WHERE source IN UNNEST(@sources)", job_config=cfg).result()
