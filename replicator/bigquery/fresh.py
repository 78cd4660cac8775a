"""Fresh path: make landed-but-uncommitted events queryable within a cycle, through the tier's ``_fresh_<tier>``.

Conversion runs ahead of loading: ``convert`` (every few seconds, and at the start of each pass) turns each new
staging object of the recent hours into its own Avro file ``bq/fresh/<tier>/objects/<staging name>.avro``
(fresh_convert.py; the name derives from the staging object, so workers converge). Then a pass, right after a time
slot closed, only has to load. With ``convert_lookback``, ``convert`` lists each hour from a start offset instead of
whole: the hour's prefix plus ``uuid7_lower_bound(clock() - convert_lookback)``. Envelope ids are UUIDv7 made by the
front-ends, so staging names sort by creation time, and the listing returns the objects whose ids were made within
the lookback, not the whole hour (300k objects at 83 envelopes/s). What it skips is converted by the pass instead
(F2 lists whole open hours, F3 converts what is not converted yet): a spool replay, which keeps its envelope's old
id; a replicator catching up on a backlog older than the lookback; a front-end clock behind by more than it; ids
that are not UUIDv7. Correctness and G1/G2 never depend on ``convert``, only latency.

One pass (``FreshLoader.run``), in numbered steps; every step is keyed by a name derived from its input, so a crash
after any step is finished by the next pass (of this worker or another):
  F1. Batch records (``bq/fresh/<tier>/<batch_id>.json``) without a ``.loaded`` marker are resumed first.
  F2. List the staging objects of the horizon's hours not known complete (``_SUCCESS``; hours.py); candidates are
      those no manifest has consumed and no batch holds, and whose creation time lies in a closed time slot (slots
      are ``slot`` long, aligned to the epoch, closed ``grace`` after their end). The candidates of a slot are cut
      into batches (bounded objects and bytes: G4) whose id hashes the sorted names. Because a closed slot's objects
      are the same for every worker, concurrent workers compute the same batches, hence the same job ids: a tier
      costs one load job per slot however many workers run.
  F3. Write the batch record (create-if-absent), convert any object not converted yet, load all the batch's files
      with ONE job into the tier table (job id from the batch id), then write the ``.loaded`` marker.
  F4. Delete the objects (Avro files, record, marker) of loaded batches whose staging objects are all committed and
      loaded (their rows were deleted from the fresh table by the committed path): each has been in a
      ``done_sources``. A batch remembers which of its objects it has not seen there yet (``_Batch.waiting``), so
      the committed path hands each loaded manifest's names over once and then drops those of complete hours; of a
      manifest found loaded (a restart), only if some batch waits on its hour (``waiting_hours``).
Partitions finalized in shards (``layout.Shard``): a shard's manifest lists a staging object but commits only that
shard's events of it, so ``committed_sources`` names an object only once a manifest of every shard lists it, and
``done_sources`` only once those are all loaded (known.py). Until then F2 and ``convert`` treat it as uncommitted:
the events of the shards that did not commit it yet are shown through the fresh table (the rows of the shards that
did are hidden by the view's anti-join, and deleted by C3: committed.py), and F4 keeps its batch. Treating "listed by
some manifest" as committed would hide the other shards' events for as long as their finalizer lags (a loss of
freshness without bound, e.g. a shard whose commits keep failing); the cost of not doing so is loading an object
once more into the fresh table when a shard committed it before F2 batched it.
If two workers still cut different batches (one saw a manifest or a ``_SUCCESS`` the other did not yet), the fresh
table holds an event twice, and the view's QUALIFY shows it once. Correctness never depends on the batching or on
what F2 lists; only cost and latency do. An envelope landing late into a complete hour is left to the committed path
(its delta generation, committed by the next finalizer pass): the freshness contract for late data.

Memory (G4): the committed path keeps the sources of the hours F2 lists (not known complete) of the days it lists,
plus those of loaded manifests until handed over once (committed.py). A batch whose objects all lie in earlier days
is not loaded by F1 and is forgotten by F4, leaving its files to the lifecycle rule on ``bq/fresh/``: its rows would
never show (event_time before the view's horizon), and F4 could never clean it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from replicator.bigquery import names
from replicator.bigquery.committed import Target
from replicator.bigquery.errors import LoadFailed, LoadPending
from replicator.bigquery.fresh_convert import Converter, recent_staging
from replicator.bigquery.hours import NONE_COMPLETE, CompleteHours, first_day, is_complete, staging_prefixes
from replicator.bigquery.jobs import LoadRunner, LoadSpec
from replicator.bigquery.metrics import LoaderMetrics
from replicator.crash import NEVER, CrashPoints
from replicator.errors import ObjectNotFound
from replicator.layout import Layout, parse_partition_dir
from replicator.store import ObjectInfo, ObjectStore
from service.catalog import Category

log = logging.getLogger(__name__)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """Bounds of one fresh batch (G4): staging objects (= files; a load job takes at most 10,000 URIs) and bytes.

    ``max_unloaded_objects`` bounds the staging names held by batches not loaded yet (pending or failed): past it,
    F2 cuts no new batch and ``convert`` converts nothing until loads go through again (a BigQuery outage, or every
    load failing). Latency only: what is not batched stays in staging, is listed again by every pass, and is shown
    through the committed path once its hour completes."""

    max_objects: int = 5_000
    max_bytes: int = 512 * 1024 * 1024
    max_unloaded_objects: int = 200_000


@dataclass(frozen=True, slots=True)
class _Batch:
    """A known batch: its staging objects, the newest UTC day of their partitions (``date.max`` if unknown), those
    not seen in a ``done_sources`` yet (at first the same tuple as ``sources``: no copy), and their partitions
    (None if a name does not parse)."""

    sources: tuple[str, ...]
    newest: dt.date
    waiting: tuple[str, ...]
    hours: frozenset[tuple[str, dt.datetime]] | None


class FreshLoader:
    """The fresh path of one tier. One pass at a time per instance. No I/O in the constructor."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        runner: LoadRunner,
        metrics: LoaderMetrics,
        target: Target,
        tier: str,
        categories: tuple[Category, ...],
        horizon: dt.timedelta,
        clock: Callable[[], dt.datetime],
        slot: dt.timedelta = dt.timedelta(seconds=60),
        grace: dt.timedelta = dt.timedelta(seconds=2),
        limits: BatchLimits | None = None,
        layout: Layout | None = None,
        crash: CrashPoints = NEVER,
        convert_lookback: dt.timedelta | None = None,
    ) -> None:
        """``convert_lookback``: how far back in envelope-id time ``convert`` lists (module docstring); None lists
        whole hours."""
        self._store, self._runner, self._metrics, self._target = store, runner, metrics, target
        self._tier, self._by_name = tier, {c.name: c for c in categories}
        self._horizon, self._clock, self._slot, self._grace = horizon, clock, slot, grace
        self._limits = limits or BatchLimits()
        self._layout = layout or Layout()
        self._crash, self._convert_lookback = crash, convert_lookback
        self._started = False
        self._batches: dict[str, _Batch] = {}  # batch id -> batch, for every known batch of the fresh window
        self._loaded: set[str] = set()
        self._failed: set[str] = set()
        self._paused = False  # the unloaded batches hold max_unloaded_objects names: no new batch, no conversion
        self._conv = Converter(store, tier, self._by_name)

    def _recover(self) -> None:
        for info in self._store.list(names.fresh_dir(self._tier)):
            stem = info.name.rsplit("/", 1)[-1]
            if "/objects/" in info.name:
                continue
            if stem.endswith(".json"):
                with contextlib.suppress(ObjectNotFound):
                    self._batches[stem[:-5]] = self._batch(json.loads(self._store.read(info.name))["sources"])
            elif stem.endswith(".loaded"):
                self._loaded.add(stem[: -len(".loaded")])
        self._started = True

    def waiting_hours(self) -> frozenset[tuple[str, dt.datetime]] | None:
        """The (category, UTC hour)s of the objects the known batches have not seen in a ``done_sources`` yet; None
        before the first pass recovered the batches (unknown). Once recovered, no new batch holds an object of an
        hour known complete (F2 skips them), so a complete hour not in it is never waited on again."""
        if not self._started:
            return None
        prefix, hours = self._layout.staging_prefix, set()
        for d in {s.rpartition("/")[0] for b in self._batches.values() for s in b.waiting}:
            if (p := parse_partition_dir(f"{d}/", prefix)) is not None:
                hours.add((p.category, p.hour))
        return frozenset(hours)

    def _batch(self, sources: Iterable[str]) -> _Batch:
        srcs, prefix = tuple(sources), self._layout.staging_prefix
        parts = {parse_partition_dir(f"{d}/", prefix) for d in {s.rpartition("/")[0] for s in srcs}}
        days = (p.hour.date() if p else dt.date.max for p in parts)
        hours = None if None in parts else frozenset((p.category, p.hour) for p in parts if p)
        return _Batch(srcs, max(days, default=dt.date.max), srcs, hours)

    def _unloaded(self, oldest: dt.date) -> int:
        """Staging names held by the batches not loaded (pending or failed) of the fresh window's days."""
        return sum(len(b.sources) for bid, b in self._batches.items() if bid not in self._loaded and b.newest >= oldest)

    def run(
        self, committed_sources: frozenset[str], done_sources: frozenset[str], complete: CompleteHours = NONE_COMPLETE
    ) -> int:
        """One pass (F1-F4). ``complete``: the hours known complete, whose staging objects F2 does not list; it must
        come with ``committed_sources`` (which need not name their objects). ``done_sources``: staging objects whose
        manifest is loaded; F4 remembers, per batch, which it saw, so a name need only be in one finished pass's
        (``CommittedLoader.handed_over``). Returns the number of events converted and loaded by this pass (rows of
        files an earlier pass wrote are not counted). Raises only on object-store errors."""
        if not self._started:
            self._recover()
        oldest, events = first_day(self._clock(), self._horizon), 0
        for bid, known in list(self._batches.items()):  # F1
            if bid in self._loaded or bid in self._failed or known.newest < oldest:
                continue
            if self._store.stat(names.fresh_marker(self._tier, bid)) is not None:  # another worker finished it
                self._loaded.add(bid)
                continue
            events += self._load_batch(bid, known.sources)
        batched = {s for b in self._batches.values() for s in b.sources}
        self._pause(unloaded := self._unloaded(oldest))
        closed_before = self._clock() - self._grace
        slots: dict[int, list[ObjectInfo]] = {}
        budget = 0 if self._paused else self._limits.max_unloaded_objects - unloaded  # paused: F2 lists nothing
        for o in self._list_staging(complete) if budget > 0 else ():
            if o.name in batched or o.name in committed_sources:
                continue
            slot = int((o.updated - _EPOCH) / self._slot)
            if _EPOCH + (slot + 1) * self._slot <= closed_before:
                slots.setdefault(slot, []).append(o)
                budget -= 1
                if budget <= 0:  # G4: the rest is cut by a later pass
                    break
        for slot in sorted(slots):  # F2, F3 (the budget keeps what they add within the limit)
            for batch in self._cut(slots[slot]):
                sources = tuple(o.name for o in batch)
                bid = names.batch_id(sources)
                record = json.dumps({"tier": self._tier, "slot": slot, "sources": list(sources)}).encode()
                name = names.fresh_record(self._tier, bid)
                self._store.create_if_absent(name, record, content_type="application/json")
                self._batches[bid] = self._batch(sources)
                events += self._load_batch(bid, sources, {o.name: o for o in batch})
        self._cleanup(committed_sources, done_sources, oldest, complete)
        self._pause(self._unloaded(oldest))
        pending = [b for b in self._batches if b not in self._loaded and b not in self._failed]
        self._metrics.pending.labels("fresh").set(len(pending))
        return events

    def _pause(self, unloaded: int) -> None:
        """Pause new batches and conversion once the unloaded batches hold ``BatchLimits.max_unloaded_objects``
        names; resume once they hold half as many (no flapping at the limit)."""
        limit = self._limits.max_unloaded_objects
        paused = unloaded > limit // 2 if self._paused else unloaded >= limit
        if paused != self._paused:
            state = "paused" if paused else "resumed"
            msg = "fresh path of %s %s: %d staging objects in batches not loaded (limit %d)"
            log.log(logging.WARNING if paused else logging.INFO, msg, self._tier, state, unloaded, limit)
        self._paused = paused
        self._metrics.fresh_paused.labels(self._tier).set(int(paused))

    def _list_staging(self, complete: CompleteHours) -> Iterator[ObjectInfo]:
        """The staging objects of the horizon's days (up to an hour ahead: the front-end accepts event times up to an
        hour in the future), but of no hour known complete (hours.py). Streamed: never held as a whole (G4)."""
        now, prefix = self._clock(), self._layout.staging_prefix
        for p in staging_prefixes(prefix, self._by_name, now - self._horizon, now + dt.timedelta(hours=1), complete):
            yield from self._store.list(p)

    def _cut(self, objects: list[ObjectInfo]) -> list[list[ObjectInfo]]:
        """Batches in name order within ``BatchLimits``."""
        batches: list[list[ObjectInfo]] = []
        size = 0
        for o in sorted(objects, key=lambda o: o.name):
            if not batches or len(batches[-1]) >= self._limits.max_objects or size + o.size > self._limits.max_bytes:
                batches.append([])
                size = 0
            batches[-1].append(o)
            size += o.size
        return batches

    def _load_batch(self, bid: str, sources: tuple[str, ...], known: Mapping[str, ObjectInfo] | None = None) -> int:
        self._conv.convert([src for src in sources if src not in self._conv.converted], known or {})
        uris = [
            f"gs://{self._target.bucket}/{names.fresh_object(self._tier, src)}"
            for src in sources
            if src in self._conv.converted
        ]
        self._crash.point("bq.fresh.after_files")
        if uris:
            spec = LoadSpec(
                kind="fresh",
                job_base=names.fresh_job_base(self._target.job_prefix, self._target.dataset, self._tier, bid),
                uris=tuple(uris),
                table=self._target.table(names.fresh_table(self._tier)),
                source_format="AVRO",
            )
            try:
                self._runner.load(spec)
            except LoadPending as exc:
                log.log(exc.log_level, "fresh load pending: %s", exc)
                return 0
            except LoadFailed:
                self._failed.add(bid)
                return 0
        self._crash.point("bq.fresh.after_load")
        self._store.create_if_absent(names.fresh_marker(self._tier, bid), b"", content_type="text/plain")
        self._loaded.add(bid)
        return self._conv.observe(sources, self._metrics, self._clock())

    def convert(self, committed_sources: frozenset[str], complete: CompleteHours = NONE_COMPLETE) -> int:
        """Convert the new staging objects of the current and the previous hour, unless complete (F2 skips those),
        ahead of their pass (cheap to call every few seconds: at most two listings per category, each from the
        lookback's start offset when there is one: module docstring). ``complete`` must come with
        ``committed_sources``, as for ``run``. Returns the number of objects converted; none while paused
        (``BatchLimits.max_unloaded_objects``)."""
        if self._paused:
            return 0
        batched = {s for b in self._batches.values() for s in b.sources}
        skip = (self._conv.converted, batched, committed_sources)
        recent = recent_staging(
            self._store, self._by_name, self._layout, self._clock(), self._convert_lookback, complete
        )
        todo = {o.name: o for o in recent if not any(o.name in names_ for names_ in skip)}
        return self._conv.convert(sorted(todo), todo)

    def _cleanup(
        self, committed: frozenset[str], done: frozenset[str], oldest: dt.date, complete: CompleteHours
    ) -> None:
        """F4: a batch is cleaned once it is loaded and every one of its objects has been in a ``done`` (loaded
        manifests only ever stay loaded). Every batch notes what it sees, loaded or not: the committed path drops a
        name once a pass has seen it. Also forgets (G4) the batches of days before ``oldest`` (module docstring), the
        batches given up (``LoadFailed``) whose hours are all complete (the committed path shows their events; their
        record is deleted, so a restart does not try them again), and the objects converted ahead that a commit
        consumed, or whose hour completed, before any batch took them: no batch ever will. All leave their files to
        the lifecycle rule on ``bq/fresh/`` (another loader's pending batch may hold them)."""
        for bid, batch in list(self._batches.items()):
            if any(s in done for s in batch.waiting):
                batch = self._batches[bid] = replace(batch, waiting=tuple(s for s in batch.waiting if s not in done))
            cleaned = bid in self._loaded and not batch.waiting
            hours = batch.hours
            moot = bid in self._failed and hours is not None and all(is_complete(complete, *h) for h in hours)
            if moot:  # given up, and every hour complete: the committed path shows its events (no resurrection)
                self._store.delete(names.fresh_record(self._tier, bid))
            elif not cleaned and batch.newest >= oldest:
                continue
            for src in batch.sources:
                if cleaned:
                    self._store.delete(names.fresh_object(self._tier, src))
                self._conv.forget(src)
            for info in self._store.list(f"{names.fresh_dir(self._tier)}{bid}") if cleaned else ():
                self._store.delete(info.name)
            del self._batches[bid]
            self._loaded.discard(bid)
            self._failed.discard(bid)
        batched = {s for b in self._batches.values() for s in b.sources}
        for src in [s for s in self._conv.converted if s not in batched]:
            p = parse_partition_dir(src, self._layout.staging_prefix)
            if src in committed or (p is not None and is_complete(complete, p.category, p.hour)):
                self._conv.forget(src)
