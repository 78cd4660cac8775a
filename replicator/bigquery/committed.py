"""Committed path: load each manifest generation of a tier's categories into ``<category>__committed``, once.

One pass (``CommittedLoader.run``), in numbered steps; a crash after any step is repaired by the next pass:
  C1. List the manifests of the lookback window (``logs/<category>/YYYY/MM/DD/``), remember the new ones, and skip
      those with a ``.loaded`` marker. The first pass of a process, and then one pass every ``backfill_interval``,
      lists the longer backfill window instead: late data (an event_time up to 7 days old, a spool replay after an
      outage) commits delta manifests into partitions older than the lookback (G1); so does a pass whose clock
      stepped back behind the last backfill. The same listings show which hours are complete (``_SUCCESS``):
      ``complete_hours``, whose staging objects the fresh path does not list.
  C2. Read each remaining manifest and load its files with ``LoadRunner`` (job id from category, hour, shard,
      generation, token). A repeat after a crash answers 409 and is recognised as done: the committed table gets
      each generation of each shard once.
  C3. Delete the fresh rows the loaded manifests cover, per partition, 10,000 sources a statement. Only an
      optimisation: the view already prefers committed rows; this keeps the fresh table (and so every query of the
      view) small. But it must never delete a row whose event is not committed yet: that event would vanish from
      the view. Idempotent. So only the rows whose event is in the committed table are deleted (``_delete_fresh``,
      ``fresh_delete_sql``): ``source IN UNNEST(@sources) AND event_id IN (SELECT event_id FROM <committed> WHERE
      event_time in the partition's hour)``, both tables bounded to the hour (partition pruning). Deleting by
      source alone is not enough, for two reasons:
      * Any manifest: an event of a source it lists may be committed only by an *earlier* generation that is not
        loaded yet (its load pending or given up: the generations of a partition load independently). E.g. a client
        retry lands the event again in a later staging object, whose fresh row is then the event's only row in the
        view; the later generation lists that object but commits no duplicate. The row kept is left to the fresh
        table's partition expiration (the earlier generation's C3 deletes by its own sources): once that generation
        loads, the view hides it (the committed row wins).
      * Manifests of a shard: a shard's manifest lists every source pending for it but commits only its own events
        of them; the other shards' events of those sources may not be committed yet.
      The hour, not the manifest's event times: a later shard's delete also removes an earlier shard's rows that a
      fresh load brought back after that shard's delete (the fresh path loads a source until every shard committed
      it: known.py).
  C4. Write the ``.loaded`` markers (create-if-absent). They only save work: a lost marker costs one 409.
A manifest without files (a delta whose events were all duplicates) has nothing to load and goes straight to C3.
Markers and job ids carry the shard (names.py): shards number their generations independently.

Memory (G4): what the passes remember of the manifests they know, and for how long: known.py (``KnownManifests``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from google.cloud import bigquery

from replicator.bigquery import names
from replicator.bigquery.errors import LoadFailed, LoadPending
from replicator.bigquery.hours import CompleteHours, first_day, success_hour
from replicator.bigquery.jobs import LoadRunner, LoadSpec
from replicator.bigquery.known import Day, Entry, KnownManifests
from replicator.bigquery.metrics import LoaderMetrics
from replicator.bigquery.views import DEFAULT_HORIZON_HOURS
from replicator.crash import NEVER, CrashPoints
from replicator.errors import ObjectNotFound
from replicator.layout import (
    Layout,
    Partition,
    days_between,
    manifest_generation,
    manifest_shard,
    parse_partition_dir,
)
from replicator.manifest import Manifest, ManifestError
from replicator.store import ObjectStore
from service.catalog import Category, FileFormat

log = logging.getLogger(__name__)
_FORMATS = {FileFormat.AVRO: "AVRO", FileFormat.JSONL_GZ: "NEWLINE_DELIMITED_JSON"}
_DELETE_CHUNK = 10_000
#: Sources of loaded manifests held before their fresh rows are deleted and their markers written (C3, C4).
_FLUSH_SOURCES = 10 * _DELETE_CHUNK
#: The front-end accepts event times up to 7 days old (``event_time_past_s``); their partitions commit after the
#: finalizer's lateness, and a spool replay may deliver them later still: 7 days + 1 day of margin.
DEFAULT_BACKFILL = dt.timedelta(hours=192)
DEFAULT_BACKFILL_INTERVAL = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a tier loads: ``project.dataset``, the bucket, and the job-id prefix."""

    project: str
    dataset: str
    bucket: str
    job_prefix: str = "logpipe"

    def table(self, name: str) -> str:
        return f"{self.project}.{self.dataset}.{name}"


class CommittedLoader:
    """The committed path of one tier. Not thread-safe: one pass at a time per instance. No I/O in the constructor.

    ``lookback``: the window every pass lists. ``backfill`` (>= ``lookback`` and >= ``fresh_horizon``, else
    ``ValueError``): the window the first pass and then one pass every ``backfill_interval`` list, and the one whose
    manifests are remembered. ``fresh_horizon``: the fresh path's horizon; sources are kept for its days only.

    Protocol with the fresh path, once a pass: ``run``; then the fresh pass with ``committed_sources``,
    ``done_sources`` and ``complete_hours`` (all three: ``committed_sources`` names no complete hour's objects once
    handed over); then ``handed_over(done_sources)`` if it finished. Without ``handed_over`` nothing is dropped.
    Then ``read_unread`` with the hours the fresh batches wait on: the names of manifests found loaded (a restart)
    that the next fresh pass needs.
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
        fresh_horizon: dt.timedelta = dt.timedelta(hours=DEFAULT_HORIZON_HOURS),
        layout: Layout | None = None,
        crash: CrashPoints = NEVER,
    ) -> None:
        if backfill < lookback:
            raise ValueError(f"the backfill window ({backfill}) must contain the lookback window ({lookback})")
        if backfill < fresh_horizon:
            raise ValueError(f"the backfill window ({backfill}) must contain the fresh horizon ({fresh_horizon})")
        self._store, self._client, self._runner, self._metrics = store, client, runner, metrics
        self._target, self._tier, self._categories = target, tier, categories
        self._lookback, self._clock, self._crash = lookback, clock, crash
        self._backfill, self._backfill_interval, self._fresh_horizon = backfill, backfill_interval, fresh_horizon
        self._layout = layout or Layout()
        self._known = KnownManifests(backfill=backfill, fresh_horizon=fresh_horizon)
        self._last_backfill: dt.datetime | None = None

    @property
    def tier(self) -> str:
        return self._tier

    @property
    def backfill(self) -> dt.timedelta:
        """How far back manifests are listed (at times) and remembered."""
        return self._backfill

    @property
    def committed_sources(self) -> frozenset[str]:
        """Staging objects the fresh path leaves alone (``KnownManifests.committed_sources``)."""
        return self._known.committed_sources

    @property
    def done_sources(self) -> frozenset[str]:
        """The ``committed_sources`` loaded and whose fresh rows are deleted (``KnownManifests.done_sources``)."""
        return self._known.done_sources

    @property
    def complete_hours(self) -> CompleteHours:
        """The hours the fresh path skips (``KnownManifests.complete_hours``)."""
        return self._known.complete_hours

    def handed_over(self, done: frozenset[str], waiting: frozenset[tuple[str, dt.datetime]] | None = None) -> None:
        """The fresh path finished a pass with ``done`` (a ``done_sources``) and then waits on the hours ``waiting``
        (``FreshLoader.waiting_hours``; None: unknown): ``KnownManifests.handed_over``."""
        self._known.handed_over(done, waiting)

    def _discover(self) -> list[tuple[str, Day]]:
        now = self._clock()
        wide = self._last_backfill is None or not dt.timedelta(0) <= now - self._last_backfill < self._backfill_interval
        self._known.age(now)
        fresh_from = first_day(now, self._fresh_horizon)
        window = self._backfill if wide else self._lookback
        for c in self._categories:
            for day in days_between(now - window, now + dt.timedelta(hours=1)):
                known = self._known.day(c.name, day, fresh=day >= fresh_from)
                if not known.markers_listed:
                    markers = self._store.list(f"{names.committed_marker_dir(c.name)}{day:%Y/%m/%d}/")
                    self._known.add_markers(known, (info.name for info in markers))
                for info in self._store.list(f"{self._layout.logs_prefix}/{c.name}/{day:%Y/%m/%d}/"):
                    if (hour := success_hour(info.name, self._layout)) is not None and hour not in known.complete:
                        self._known.hour_complete(known, hour)
                    elif info.name not in known.manifests and (entry := self._entry(info.name, known)):
                        self._known.add(known, info.name, entry)
        if wide:  # only once the whole window is listed: a store error retries the backfill next pass
            self._last_backfill = now
        return self._known.to_load()

    def _entry(self, name: str, day: Day) -> Entry | None:
        """The entry of manifest object ``name`` of ``day``; None if it is no manifest or (read for its sources)
        unreadable. Read only for an open hour of the fresh window; one of a complete hour is read when it is loaded,
        or, already loaded, when its names are handed over (``read_unread``)."""
        p, generation, shard = (
            parse_partition_dir(name, self._layout.logs_prefix),
            manifest_generation(name),
            manifest_shard(name),
        )
        if p is None or generation is None or shard is None:
            return None
        marker, hour = names.committed_marker(p, generation, shard), p.hour.hour
        if not day.fresh or hour in day.complete:
            return Entry(marker, hour, unread=day.fresh and marker in day.done, shard=shard)
        m = self._read(name)
        return Entry(marker, hour, m.sources, shard=shard) if m else None

    def _read(self, name: str) -> Manifest | None:
        try:
            return Manifest.from_json(self._store.read(name))
        except (ManifestError, ObjectNotFound) as exc:
            log.error("skipping unreadable manifest %s: %s", name, exc)
            return None

    def run(self) -> int:
        """One pass (C1-C4). Returns how many manifests it finished. Raises only on object-store errors."""
        todo = self._discover()
        by_name = {c.name: c for c in self._categories}
        loaded: list[tuple[str, Manifest, Day]] = []  # loaded, waiting for C3/C4: bounded by _FLUSH_SOURCES
        finished = pending = held = 0
        for name, day in todo:
            m = self._read(name)
            if m is None:
                self._known.forget(day, name)  # the next scan lists it again (and logs again)
                continue
            p = Partition(m.category, m.partition_hour)
            spec = LoadSpec(
                kind="commit",
                job_base=names.commit_job_base(
                    self._target.job_prefix, self._target.dataset, p, m.generation, m.token, m.shard
                ),
                uris=tuple(f"gs://{self._target.bucket}/{f.name}" for f in m.files),
                table=self._target.table(names.committed_table(m.category)),
                source_format=_FORMATS[by_name[m.category].file_format],
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
                    self._known.give_up(day, name)
                    continue
            self._crash.point("bq.commit.after_load")
            loaded.append((name, m, day))
            held += len(m.sources)
            if held >= _FLUSH_SOURCES:
                ok = self._finish(loaded)
                finished, loaded, held = finished + (len(loaded) if ok else 0), [], 0
                if not ok:  # the next pass loads the rest again (409) and retries
                    break
        self._metrics.pending.labels("commit").set(pending)
        if loaded and self._finish(loaded):
            finished += len(loaded)
        return finished

    @property
    def any_unread(self) -> bool:
        """Whether a loaded manifest of a complete hour waits for ``read_unread``."""
        return self._known.any_unread

    @property
    def wants_waiting(self) -> bool:
        """Whether ``handed_over`` and ``read_unread`` have a use for the hours the fresh batches wait on: some
        manifest is unread, or a loaded shard's manifest of a complete hour holds names (known.py)."""
        return self._known.any_unread or self._known.any_shard_held

    def read_unread(self, waiting: frozenset[tuple[str, dt.datetime]] | None = None) -> None:
        """Read the names of loaded manifests of complete hours not handed over yet (found loaded, or beyond the room
        when loaded), newest first, while there is room: what ``done_sources`` lacks for F4. ``waiting``: the
        (category, UTC hour)s some fresh batch waits on (``FreshLoader.waiting_hours``), once the fresh path has
        recovered its batches; a manifest of any other hour is not read, and never will be (no later batch can wait
        on a complete hour). None (unknown): every one is read, a bounded number a call."""
        room = self._known.handover_room()
        for name, day, hour in self._known.unread():
            if waiting is not None and hour not in waiting:
                self._known.not_wanted(day, name)
                continue
            if room <= 0 and not self._known.completes_held(day, name):  # a sibling shard's: read anyway (known.py)
                continue  # clear the flags of the rest not waited on
            m = self._read(name)  # None (logged): nothing to hand over
            self._known.hold(day, name, m.sources if m else ())
            room -= len(m.sources) if m else 0

    def _finish(self, loaded: list[tuple[str, Manifest, Day]]) -> bool:
        """C3 and C4 for ``loaded``. False if the delete failed: the next pass loads them again (409) and retries."""
        by_partition: dict[Partition, set[str]] = {}
        for _, m, _ in loaded:
            by_partition.setdefault(m.partition, set()).update(m.sources)
        try:
            for p, sources in sorted(by_partition.items()):
                self._delete_fresh(p, sorted(sources))
        except Exception as exc:
            log.warning("deleting committed fresh rows failed, retrying next pass: %r", exc)
            return False
        self._crash.point("bq.commit.after_delete")
        now, room = self._clock(), self._known.handover_room()
        for name, m, day in loaded:
            self._store.create_if_absent(day.manifests[name].marker, b"", content_type="text/plain")
            room = self._known.loaded(day, name, m.sources, room)
            created = dt.datetime.fromisoformat(m.created.replace("Z", "+00:00"))
            self._metrics.commit_latency.observe(max(0.0, (now - created).total_seconds()))
        return True

    def _delete_fresh(self, p: Partition, sources: list[str]) -> None:
        """C3 for the loaded manifests of ``p`` (whole or shards): the fresh rows of ``sources`` whose event is in the
        committed table, never another (module docstring). Both tables are bounded to ``p``'s hour: the staging
        objects of ``p`` hold only its events, and a bound can only make the statement delete less."""
        fresh = self._target.table(names.fresh_table(self._tier))
        committed = self._target.table(names.committed_table(p.category))
        sql = fresh_delete_sql(fresh, committed)
        start, end = p.hour, p.hour + dt.timedelta(hours=1)
        for i in range(0, len(sources), _DELETE_CHUNK):
            params = [
                bigquery.ArrayQueryParameter("sources", "STRING", sources[i : i + _DELETE_CHUNK]),
                bigquery.ScalarQueryParameter("start", "TIMESTAMP", start),
                bigquery.ScalarQueryParameter("end", "TIMESTAMP", end),
            ]
            self._client.query(sql, job_config=bigquery.QueryJobConfig(query_parameters=params)).result()


def fresh_delete_sql(fresh: str, committed: str) -> str:
    """C3's statement for every manifest, whole or a shard's (module docstring), on the tables ``fresh`` and
    ``committed`` (``project.dataset.table``). Parameters: ``@sources`` (ARRAY<STRING>), ``@start`` and ``@end``
    (TIMESTAMP: the partition's hour, end excluded)."""
    return (
        f"DELETE FROM `{fresh}` AS f\n"
        f"WHERE f.source IN UNNEST(@sources) AND f.event_time >= @start AND f.event_time < @end\n"
        f"  AND f.event_id IN (SELECT c.event_id FROM `{committed}` AS c\n"
        f"                     WHERE c.event_time >= @start AND c.event_time < @end)"
    )
