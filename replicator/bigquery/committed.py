"""Committed path: load each manifest generation of a tier's categories into ``<category>__committed``, once.

One pass (``CommittedLoader.run``), in numbered steps; a crash after any step is repaired by the next pass:
  C1. List the manifests of the lookback window (``logs/<category>/YYYY/MM/DD/``), remember the new ones, and skip
      those with a ``.loaded`` marker. The first pass of a process, and then one pass every ``backfill_interval``,
      lists the longer backfill window instead: late data (an event_time up to 7 days old, a spool replay after an
      outage) commits delta manifests into partitions older than the lookback (G1); so does a pass whose clock
      stepped back behind the last backfill. The same listings show which hours are complete (``_SUCCESS``):
      ``complete_hours``, whose staging objects the fresh path does not list.
  C2. Read each remaining manifest and load its files with ``LoadRunner`` (job id from category, hour, generation,
      token). A repeat after a crash answers 409 and is recognised as done: the committed table gets each generation
      once.
  C3. Delete the fresh rows the loaded manifests cover (``DELETE ... WHERE source IN UNNEST(@sources)``, 10,000
      sources a statement). Only an optimisation: the view already prefers committed rows; this keeps the fresh
      table (and so every query of the view) small. Idempotent.
  C4. Write the ``.loaded`` markers (create-if-absent). They only save work: a lost marker costs one 409.
A manifest without files (a delta whose events were all duplicates) has nothing to load and goes straight to C3.

Memory (G4): what a pass learns is kept per (category, UTC day) and dropped once the day is older than the backfill
window, which no scan lists again. A known manifest is an ``_Entry``: its marker name, its partition's hour, and its
``sources`` only while the fresh path can use them. That is in the fresh window (from the day of ``now -
fresh_horizon`` on: the staging days the fresh path lists) and only:
  * while its hour is not known complete: F2 and ``convert`` list the staging objects of those hours and skip what
    ``committed_sources`` names. A complete hour is never listed (hours.py), so its names exclude nothing. The
    finalizer writes ``_SUCCESS`` right after generation 1, so this is the hours a listing has not yet seen complete.
  * once the manifest is loaded (``done_sources``), until ``handed_over``: F4 cleans a batch once each of its
    objects has been in a ``done_sources`` (fresh.py), so each loaded manifest's names are handed over once, after
    which only the open hours' stay. They come from the read that loaded it (C2), or, for a manifest found loaded
    (a restart), from reading it again; at most ``_HANDOVER_SOURCES`` are held for this beyond one manifest, the
    rest wait for later passes (newest first).
A manifest of an older day, or of a complete hour and not loaded yet, is not even read until it has to be loaded. C2
reads the manifest it loads (immutable), and C3/C4 run every ``_FLUSH_SOURCES`` sources: a catch-up holds few at a
time.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from google.cloud import bigquery

from replicator.bigquery import names
from replicator.bigquery.errors import LoadFailed, LoadPending
from replicator.bigquery.hours import CompleteHours, first_day, success_hour
from replicator.bigquery.jobs import LoadRunner, LoadSpec
from replicator.bigquery.metrics import LoaderMetrics
from replicator.bigquery.views import DEFAULT_HORIZON_HOURS
from replicator.crash import NEVER, CrashPoints
from replicator.errors import ObjectNotFound
from replicator.layout import Layout, Partition, days_between, manifest_generation, parse_partition_dir
from replicator.manifest import Manifest, ManifestError
from replicator.store import ObjectStore
from service.catalog import Category, FileFormat

log = logging.getLogger(__name__)
_FORMATS = {FileFormat.AVRO: "AVRO", FileFormat.JSONL_GZ: "NEWLINE_DELIMITED_JSON"}
_DELETE_CHUNK = 10_000
#: Sources of loaded manifests held before their fresh rows are deleted and their markers written (C3, C4).
_FLUSH_SOURCES = 10 * _DELETE_CHUNK
#: Sources of loaded manifests of complete hours held for the fresh path's F4 until handed over (beyond one manifest).
_HANDOVER_SOURCES = _FLUSH_SOURCES
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


@dataclass(frozen=True, slots=True)
class _Entry:
    """What is remembered of one known manifest: its ``.loaded`` marker, its partition's UTC hour, and its sources
    while the fresh path can use them (``()`` otherwise: module docstring). ``unread``: loaded, of a complete hour of
    the fresh window, and its sources still to be read and handed over. Files and the rest are read again to load it.
    """

    marker: str
    hour: int
    sources: tuple[str, ...] = ()
    unread: bool = False


@dataclass(slots=True)
class _Day:
    """What the passes learned of one category's UTC day; forgotten as a whole when the day leaves the backfill
    window."""

    fresh: bool  # in the fresh window: entries carry their sources while the fresh path can use them
    markers_listed: bool = False
    manifests: dict[str, _Entry] = field(default_factory=dict)  # manifest name -> entry
    done: set[str] = field(default_factory=set)  # ``.loaded`` markers
    complete: set[int] = field(default_factory=set)  # hours with ``_SUCCESS`` (never deleted: only ever added)
    failed: set[str] = field(default_factory=set)  # manifests whose load was given up (recorded by the runner)


class CommittedLoader:
    """The committed path of one tier. Not thread-safe: one pass at a time per instance. No I/O in the constructor.

    ``lookback``: the window every pass lists. ``backfill`` (>= ``lookback`` and >= ``fresh_horizon``, else
    ``ValueError``): the window the first pass and then one pass every ``backfill_interval`` list, and the one whose
    manifests are remembered. ``fresh_horizon``: the fresh path's horizon; sources are kept for its days only.

    Protocol with the fresh path, once a pass: ``run``; then the fresh pass with ``committed_sources``,
    ``done_sources`` and ``complete_hours`` (all three: ``committed_sources`` names no complete hour's objects once
    handed over); then ``handed_over(done_sources)`` if it finished. Without ``handed_over`` nothing is dropped.
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
        self._days: dict[tuple[str, dt.date], _Day] = {}
        self._last_backfill: dt.datetime | None = None
        # Built on demand, dropped on every change: the fresh path asks every few seconds (``convert``).
        self._committed_cache: frozenset[str] | None = None
        self._done_cache: frozenset[str] | None = None
        self._complete_cache: CompleteHours | None = None

    @property
    def backfill(self) -> dt.timedelta:
        """How far back manifests are listed (at times) and remembered."""
        return self._backfill

    @property
    def committed_sources(self) -> frozenset[str]:
        """Staging objects of the fresh window's days consumed by a known manifest: the fresh path leaves these
        alone. Complete for every hour the fresh path lists, i.e. every hour of the fresh window's days that is not
        in ``complete_hours`` (the window's first day only moves forward, and an hour only ever becomes complete).
        Of a complete hour, only the names of loaded manifests not yet ``handed_over``."""
        if self._committed_cache is None:
            entries = (e for d in self._days.values() for e in d.manifests.values())
            self._committed_cache = frozenset(s for e in entries for s in e.sources)
        return self._committed_cache

    @property
    def done_sources(self) -> frozenset[str]:
        """The ``committed_sources`` whose manifest is loaded and whose fresh rows are deleted. Each loaded manifest of
        the fresh window is in it at least once before ``handed_over`` drops it (that of an open hour until the hour
        completes): F4 accumulates what it saw (fresh.py)."""
        if self._done_cache is None:
            self._done_cache = frozenset(
                s for d in self._days.values() for e in d.manifests.values() if e.marker in d.done for s in e.sources
            )
        return self._done_cache

    @property
    def complete_hours(self) -> CompleteHours:
        """Per (category, day), the hours whose ``_SUCCESS`` a listing saw: the fresh path skips them (hours.py)."""
        if self._complete_cache is None:
            self._complete_cache = {k: frozenset(d.complete) for k, d in self._days.items() if d.complete}
        return self._complete_cache

    def handed_over(self, done: frozenset[str]) -> None:
        """The fresh path finished a pass with ``done`` (a ``done_sources``): drop the names of every loaded manifest
        of a complete hour that it held. They exclude nothing (F2 does not list complete hours), and F4 keeps what it
        saw. A manifest of an open hour keeps its names until its hour completes."""
        for d in self._days.values():
            for n, e in d.manifests.items():
                if e.sources and e.hour in d.complete and e.marker in d.done and all(s in done for s in e.sources):
                    d.manifests[n] = replace(e, sources=())
                    self._changed()

    def _changed(self) -> None:
        self._committed_cache = self._done_cache = self._complete_cache = None

    def _age(self, now: dt.datetime) -> None:
        """Drop every day before the backfill window (no later scan lists them: the window only moves forward), and
        the sources of every day before the fresh window (the fresh path never lists them again)."""
        oldest, fresh_from = first_day(now, self._backfill), first_day(now, self._fresh_horizon)
        for key in [key for key in self._days if key[1] < oldest]:
            del self._days[key]
            self._changed()
        for (_, day), known in self._days.items():
            if known.fresh and day < fresh_from:
                known.manifests = {n: replace(e, sources=(), unread=False) for n, e in known.manifests.items()}
            elif not known.fresh and day >= fresh_from:  # the clock stepped back: read the day's manifests again
                known.manifests.clear()
            else:
                continue
            known.fresh = day >= fresh_from
            self._changed()

    def _discover(self) -> list[tuple[str, _Day]]:
        now = self._clock()
        wide = self._last_backfill is None or not dt.timedelta(0) <= now - self._last_backfill < self._backfill_interval
        self._age(now)
        fresh_from = first_day(now, self._fresh_horizon)
        window = self._backfill if wide else self._lookback
        for c in self._categories:
            for day in days_between(now - window, now + dt.timedelta(hours=1)):
                known = self._days.setdefault((c.name, day), _Day(fresh=day >= fresh_from))
                if not known.markers_listed:
                    for info in self._store.list(f"{names.committed_marker_dir(c.name)}{day:%Y/%m/%d}/"):
                        known.done.add(info.name)
                    known.markers_listed = True
                    self._changed()
                for info in self._store.list(f"{self._layout.logs_prefix}/{c.name}/{day:%Y/%m/%d}/"):
                    if (hour := success_hour(info.name, self._layout)) is not None and hour not in known.complete:
                        known.complete.add(hour)
                        for n, e in known.manifests.items():  # F2 no longer lists the hour: keep loaded ones' only
                            if e.hour == hour and e.sources and e.marker not in known.done:
                                known.manifests[n] = replace(e, sources=())
                        self._changed()
                    elif info.name not in known.manifests and (entry := self._entry(info.name, known)):
                        known.manifests[info.name] = entry
                        self._changed()
        if wide:  # only once the whole window is listed: a store error retries the backfill next pass
            self._last_backfill = now
        todo = [
            (n, d)
            for d in self._days.values()
            for n, e in d.manifests.items()
            if e.marker not in d.done and n not in d.failed
        ]
        return sorted(todo, key=lambda t: t[0])

    def _entry(self, name: str, day: _Day) -> _Entry | None:
        """The entry of manifest object ``name`` of ``day``; None if it is no manifest or (read for its sources)
        unreadable. Read only for an open hour of the fresh window; one of a complete hour is read when it is loaded,
        or, already loaded, when its names are handed over (``_read_unread``)."""
        p, generation = parse_partition_dir(name, self._layout.logs_prefix), manifest_generation(name)
        if p is None or generation is None:
            return None
        marker, hour = names.committed_marker(p, generation), p.hour.hour
        if not day.fresh or hour in day.complete:
            return _Entry(marker, hour, unread=day.fresh and marker in day.done)
        m = self._read(name)
        return _Entry(marker, hour, m.sources) if m else None

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
        loaded: list[tuple[str, Manifest, _Day]] = []  # loaded, waiting for C3/C4: bounded by _FLUSH_SOURCES
        finished = pending = held = 0
        for name, day in todo:
            m = self._read(name)
            if m is None:
                del day.manifests[name]  # the next scan lists it again (and logs again)
                self._changed()
                continue
            p = Partition(m.category, m.partition_hour)
            spec = LoadSpec(
                kind="commit",
                job_base=names.commit_job_base(self._target.job_prefix, self._target.dataset, p, m.generation, m.token),
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
                    day.failed.add(name)
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
        self._read_unread()
        return finished

    def _handover_room(self) -> int:
        """How many more names of loaded manifests of complete hours may be held for the fresh path."""
        held = sum(len(e.sources) for d in self._days.values() for e in d.manifests.values() if e.hour in d.complete)
        return _HANDOVER_SOURCES - held

    def _read_unread(self) -> None:
        """Read the names of loaded manifests of complete hours not handed over yet (found loaded, or beyond the room
        when loaded), newest first, while there is room: what ``done_sources`` lacks for F4."""
        room = self._handover_room()
        unread = [(k[1], e.hour, n, d) for k, d in self._days.items() for n, e in d.manifests.items() if e.unread]
        for _, _, name, day in sorted(unread, reverse=True, key=lambda t: t[:3]):
            if room <= 0:
                break
            m = self._read(name)  # None (logged): nothing to hand over
            day.manifests[name] = replace(day.manifests[name], sources=m.sources if m else (), unread=False)
            room -= len(m.sources) if m else 0
            self._changed()

    def _finish(self, loaded: list[tuple[str, Manifest, _Day]]) -> bool:
        """C3 and C4 for ``loaded``. False if the delete failed: the next pass loads them again (409) and retries."""
        try:
            self._delete_fresh(sorted({s for _, m, _ in loaded for s in m.sources}))
        except Exception as exc:
            log.warning("deleting committed fresh rows failed, retrying next pass: %r", exc)
            return False
        self._crash.point("bq.commit.after_delete")
        now, room = self._clock(), self._handover_room()
        for name, m, day in loaded:
            entry = day.manifests[name]
            self._store.create_if_absent(entry.marker, b"", content_type="text/plain")
            day.done.add(entry.marker)
            if day.fresh and entry.hour in day.complete and not entry.sources:  # its names, for F4: hand them over
                day.manifests[name] = replace(entry, sources=m.sources) if room > 0 else replace(entry, unread=True)
                room -= len(m.sources)
            self._changed()
            created = dt.datetime.fromisoformat(m.created.replace("Z", "+00:00"))
            self._metrics.commit_latency.observe(max(0.0, (now - created).total_seconds()))
        return True

    def _delete_fresh(self, sources: list[str]) -> None:
        table = self._target.table(names.fresh_table(self._tier))
        for i in range(0, len(sources), _DELETE_CHUNK):
            chunk = sources[i : i + _DELETE_CHUNK]
            cfg = bigquery.QueryJobConfig(query_parameters=[bigquery.ArrayQueryParameter("sources", "STRING", chunk)])
            self._client.query(f"DELETE FROM `{table}` WHERE source IN UNNEST(@sources)", job_config=cfg).result()
