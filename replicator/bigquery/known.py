"""What the committed path remembers of the manifests it knows, per (category, UTC day): ``KnownManifests``.

Memory (G4): what a pass learns is kept per (category, UTC day) and dropped once the day is older than the backfill
window, which no scan lists again. A known manifest is an ``Entry``: its marker name, its partition's hour, and its
``sources`` only while the fresh path can use them. That is in the fresh window (from the day of ``now -
fresh_horizon`` on: the staging days the fresh path lists) and only:
  * while its hour is not known complete: F2 and ``convert`` list the staging objects of those hours and skip what
    ``committed_sources`` names. A complete hour is never listed (hours.py), so its names exclude nothing. The
    finalizer writes ``_SUCCESS`` right after generation 1, so this is the hours a listing has not yet seen complete.
  * once the manifest is loaded (``done_sources``), until ``handed_over``: F4 cleans a batch once each of its
    objects has been in a ``done_sources`` (fresh.py), so each loaded manifest's names are handed over once, after
    which only the open hours' stay. They come from the read that loaded it (C2), or, for a manifest found loaded
    (a restart), from reading it again, but only if a fresh batch waits on a name of its (category, hour): only
    batches recovered by a restarted fresh path, or cut before their hour completed, can; once the fresh path has
    recovered, a manifest of an hour no batch waits on is never read. At most ``_HANDOVER_SOURCES`` are held for
    this beyond one manifest, the rest wait for later passes (newest first).
A manifest of an older day, or of a complete hour and not loaded yet, is not even read until it has to be loaded. C2
reads the manifest it loads (immutable), and C3/C4 run every ``_FLUSH_SOURCES`` sources (committed.py): a catch-up
holds few at a time.

Sharded partitions (``layout.Shard``): a manifest of shard K of N lists every staging object pending for K at its
commit, but commits only K's events of them. So a source is *consumed* (its events all committed) only once a
manifest of every shard of its partition lists it, and *done* only once such a manifest of every shard is loaded.
``committed_sources`` and ``done_sources`` say exactly that (an unsharded manifest alone covers its sources, as
before): the fresh path keeps loading an object until every shard committed it, so the events of a shard that did not
commit it yet (a slower or failing finalizer of that shard) stay in the view through the fresh table, and F4 cleans a
batch only once every shard's rows of its objects are in the committed table. Until then the names of the loaded
shards' manifests of a complete hour are held (``handed_over`` drops a manifest's names once all are done). So that a
partial set never pins the handover room: an unread manifest of a sibling shard is read even beyond the room
(``completes_held``), and ``handed_over`` also drops the names of a complete hour no fresh batch waits on (``waiting``:
none ever will). What stays pinned is a loaded shard's names while a sibling's load is pending or given up, and a
batch waits on them: F4 must not clean that batch (a shard's rows of it are not committed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from replicator.bigquery.hours import CompleteHours, first_day
from replicator.layout import WHOLE, Shard

#: Sources of loaded manifests of complete hours held for the fresh path's F4 until handed over (beyond one manifest).
#: As many as committed.py's ``_FLUSH_SOURCES``.
_HANDOVER_SOURCES = 100_000


@dataclass(frozen=True, slots=True)
class Entry:
    """What is remembered of one known manifest: its ``.loaded`` marker, its partition's UTC hour, and its sources
    while the fresh path can use them (``()`` otherwise: module docstring). ``unread``: loaded, of a complete hour of
    the fresh window, and its sources still to be read and handed over. ``shard``: the shard of the partition it
    commits (from its name; ``WHOLE`` if unsharded). Files and the rest are read again to load it.
    """

    marker: str
    hour: int
    sources: tuple[str, ...] = ()
    unread: bool = False
    shard: Shard = WHOLE


@dataclass(slots=True)
class Day:
    """What the passes learned of one category's UTC day; forgotten as a whole when the day leaves the backfill
    window."""

    fresh: bool  # in the fresh window: entries carry their sources while the fresh path can use them
    markers_listed: bool = False
    manifests: dict[str, Entry] = field(default_factory=dict)  # manifest name -> entry
    done: set[str] = field(default_factory=set)  # ``.loaded`` markers
    complete: set[int] = field(default_factory=set)  # hours with ``_SUCCESS`` (never deleted: only ever added)
    failed: set[str] = field(default_factory=set)  # manifests whose load was given up (recorded by the runner)


def _covered(day: Day, loaded_only: bool) -> Iterator[str]:
    """The sources of ``day``'s entries (of the loaded ones only if ``loaded_only``) whose events are all covered: those
    of an unsharded manifest, and those a manifest of every shard of their partition lists (module docstring)."""
    by_shard: dict[tuple[int, int], dict[str, set[int]]] = {}  # (hour, shard count) -> source -> shards listing it
    for e in day.manifests.values():
        if not e.sources or (loaded_only and e.marker not in day.done):
            continue
        if e.shard.count == 1:
            yield from e.sources
            continue
        listed = by_shard.setdefault((e.hour, e.shard.count), {})
        for s in e.sources:
            listed.setdefault(s, set()).add(e.shard.index)
    for (_, count), listed in by_shard.items():
        yield from (s for s, shards in listed.items() if len(shards) == count)


class KnownManifests:
    """The known manifests of one tier's backfill window, and the views of them the fresh path asks for.

    No I/O: the committed pass lists and reads, and records here what it learned. It reads the fields of the ``Day``
    handles it gets (``day``, ``to_load``, ``unread``) and changes them only through the methods below. Every change
    drops the cached views (``committed_sources``, ``done_sources``, ``complete_hours``), built again on demand: the
    fresh path asks every few seconds (``convert``). Not thread-safe. Nothing survives a crash: a new process learns
    it all again from the listings (its first pass lists the backfill window) and the ``.loaded`` markers.

    ``backfill``: days before it are forgotten (``age``). ``fresh_horizon``: sources are kept for its days only.
    """

    def __init__(self, *, backfill: dt.timedelta, fresh_horizon: dt.timedelta) -> None:
        self._backfill, self._fresh_horizon = backfill, fresh_horizon
        self._days: dict[tuple[str, dt.date], Day] = {}
        # Built on demand, dropped on every change: the fresh path asks every few seconds (``convert``).
        self._committed_cache: frozenset[str] | None = None
        self._done_cache: frozenset[str] | None = None
        self._complete_cache: CompleteHours | None = None

    @property
    def committed_sources(self) -> frozenset[str]:
        """Staging objects of the fresh window's days consumed by the known manifests (by one unsharded manifest, or
        by a manifest of every shard of their partition): the fresh path leaves these alone. Complete for every hour
        the fresh path lists, i.e. every hour of the fresh window's days that is not in ``complete_hours`` (the
        window's first day only moves forward, and an hour only ever becomes complete). Of a complete hour, only the
        names of loaded manifests not yet ``handed_over``."""
        if self._committed_cache is None:
            self._committed_cache = frozenset(s for d in self._days.values() for s in _covered(d, loaded_only=False))
        return self._committed_cache

    @property
    def done_sources(self) -> frozenset[str]:
        """The ``committed_sources`` whose manifests (one unsharded, or one of every shard) are loaded and whose fresh
        rows are deleted. Each loaded manifest of the fresh window is in it at least once before ``handed_over``
        drops it (that of an open hour until the hour completes; that of a shard once every shard's manifest listing
        its names is loaded and held): F4 accumulates what it saw (fresh.py)."""
        if self._done_cache is None:
            self._done_cache = frozenset(s for d in self._days.values() for s in _covered(d, loaded_only=True))
        return self._done_cache

    @property
    def complete_hours(self) -> CompleteHours:
        """Per (category, day), the hours whose ``_SUCCESS`` a listing saw: the fresh path skips them (hours.py)."""
        if self._complete_cache is None:
            self._complete_cache = {k: frozenset(d.complete) for k, d in self._days.items() if d.complete}
        return self._complete_cache

    def handed_over(self, done: frozenset[str], waiting: frozenset[tuple[str, dt.datetime]] | None = None) -> None:
        """The fresh path finished a pass with ``done`` (a ``done_sources``): drop the names of every loaded manifest
        of a complete hour that it held. They exclude nothing (F2 does not list complete hours), and F4 keeps what it
        saw. A manifest of an open hour keeps its names until its hour completes. ``waiting``: the (category, UTC
        hour)s some fresh batch waits on after that pass (``FreshLoader.waiting_hours``; None: unknown); the names of
        a complete hour not in it are dropped as well, done or not: no batch will ever need them (a shard's manifest
        whose sibling's names are not held, module docstring; an unsharded loaded manifest's are all done anyway)."""
        for (category, day), d in self._days.items():
            for n, e in d.manifests.items():
                if not (e.sources and e.hour in d.complete and e.marker in d.done):
                    continue
                hour = dt.datetime(day.year, day.month, day.day, e.hour, tzinfo=dt.UTC)
                if all(s in done for s in e.sources) or (waiting is not None and (category, hour) not in waiting):
                    d.manifests[n] = replace(e, sources=())
                    self._changed()

    def _changed(self) -> None:
        self._committed_cache = self._done_cache = self._complete_cache = None

    def age(self, now: dt.datetime) -> None:
        """Drop every day before the backfill window (no later scan lists them: the window only moves forward), and
        the sources of every day before the fresh window (the fresh path never lists them again). Called at the start
        of each pass, before ``day``."""
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

    def day(self, category: str, day: dt.date, *, fresh: bool) -> Day:
        """The memory of (``category``, ``day``); a new, empty one (in the fresh window if ``fresh``) if unknown."""
        return self._days.setdefault((category, day), Day(fresh=fresh))

    def add_markers(self, day: Day, markers: Iterable[str]) -> None:
        """Record the ``.loaded`` markers of one listing of ``day``'s marker prefix (consumed here), then that the
        day's markers are listed: they are not listed again, and the markers this process writes come in ``loaded``."""
        for marker in markers:
            day.done.add(marker)
        day.markers_listed = True
        self._changed()

    def hour_complete(self, day: Day, hour: int) -> None:
        """A listing saw the ``_SUCCESS`` of ``hour`` of ``day``: F2 no longer lists it, so drop the names of its
        manifests not loaded yet (the loaded ones' wait for ``handed_over``)."""
        day.complete.add(hour)
        for n, e in day.manifests.items():
            if e.hour == hour and e.sources and e.marker not in day.done:
                day.manifests[n] = replace(e, sources=())
        self._changed()

    def add(self, day: Day, name: str, entry: Entry) -> None:
        """Remember manifest ``name`` of ``day``."""
        day.manifests[name] = entry
        self._changed()

    def forget(self, day: Day, name: str) -> None:
        """Forget manifest ``name`` of ``day`` (unreadable): the next listing finds it again."""
        del day.manifests[name]
        self._changed()

    def give_up(self, day: Day, name: str) -> None:
        """The load of manifest ``name`` of ``day`` failed for good: no later pass of this process retries it."""
        day.failed.add(name)

    def to_load(self) -> list[tuple[str, Day]]:
        """The known manifests without a ``.loaded`` marker and not given up, by name."""
        todo = [
            (n, d)
            for d in self._days.values()
            for n, e in d.manifests.items()
            if e.marker not in d.done and n not in d.failed
        ]
        return sorted(todo, key=lambda t: t[0])

    def handover_room(self) -> int:
        """How many more names of loaded manifests of complete hours may be held for the fresh path."""
        held = sum(len(e.sources) for d in self._days.values() for e in d.manifests.values() if e.hour in d.complete)
        return _HANDOVER_SOURCES - held

    def loaded(self, day: Day, name: str, sources: tuple[str, ...], room: int) -> int:
        """Manifest ``name`` of ``day`` is loaded, its fresh rows deleted and its marker written. ``sources``: its
        names, held for F4 if it is of a complete hour of the fresh window and there is ``room`` (else marked
        ``unread``). Returns the room left."""
        entry = day.manifests[name]
        day.done.add(entry.marker)
        if day.fresh and entry.hour in day.complete and not entry.sources:  # its names, for F4: hand them over
            day.manifests[name] = replace(entry, sources=sources) if room > 0 else replace(entry, unread=True)
            room -= len(sources)
        self._changed()
        return room

    @property
    def any_unread(self) -> bool:
        """Whether some manifest is ``unread``."""
        return any(e.unread for d in self._days.values() for e in d.manifests.values())

    @property
    def any_shard_held(self) -> bool:
        """Whether a loaded shard's manifest of a complete hour holds names: ``handed_over`` drops them once all are
        done, or once no batch waits on the hour (which it can only tell given ``waiting``)."""
        return any(
            e.sources and e.shard.count > 1 and e.hour in d.complete and e.marker in d.done
            for d in self._days.values()
            for e in d.manifests.values()
        )

    def unread(self) -> list[tuple[str, Day, tuple[str, dt.datetime]]]:
        """The ``unread`` manifests (loaded, of complete hours, names not held yet), newest hour first, each with its
        (category, UTC hour)."""
        unread = [
            (day, e.hour, n, d, (category, dt.datetime(day.year, day.month, day.day, e.hour, tzinfo=dt.UTC)))
            for (category, day), d in self._days.items()
            for n, e in d.manifests.items()
            if e.unread
        ]
        return [(name, d, key) for _, _, name, d, key in sorted(unread, reverse=True, key=lambda t: t[:3])]

    def hold(self, day: Day, name: str, sources: tuple[str, ...]) -> None:
        """Hold ``sources``, read again, of the ``unread`` manifest ``name`` of ``day`` until ``handed_over``."""
        day.manifests[name] = replace(day.manifests[name], sources=sources, unread=False)
        self._changed()

    def not_wanted(self, day: Day, name: str) -> None:
        """No fresh batch waits on a name of the ``unread`` manifest ``name`` of ``day``'s hour, and none ever will
        (the fresh path recovered its batches, and F2 never lists a complete hour): it is not read."""
        day.manifests[name] = replace(day.manifests[name], unread=False)
        self._changed()

    def completes_held(self, day: Day, name: str) -> bool:
        """Whether ``name`` of ``day`` is a shard's manifest and a loaded sibling shard's manifest holds its names:
        reading it (beyond the handover room) lets them be done and handed over, instead of held for good."""
        entry = day.manifests[name]
        return entry.shard.count > 1 and any(
            e.sources and e.hour == entry.hour and e.shard.count == entry.shard.count and e.shard != entry.shard
            for e in day.manifests.values()
            if e.marker in day.done
        )
