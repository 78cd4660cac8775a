"""Finalization: merge a closed partition's staging objects into committed data files (steps F1-F6, docs/design.md).

Contract of ``Finalizer.finalize_partition``:
  * Commits zero or more generations until no staging object of the partition is pending, then makes sure
    ``_SUCCESS`` exists. Returns the manifests this call committed.
  * Safe to run concurrently from any number of processes and to kill at any point: the manifest, created only if
    absent, is the single commit point; a loser of a race retries with what the winner did not consume.
  * An event that has no valid row (``records.UnconvertibleEvent`` or any other conversion error) never blocks the
    partition: it is not committed, listed in the manifest's ``rejected`` (counted in ``rejected_total``), counted in
    ``logpipe_replicator_unconvertible_events_total{category,reason}``, logged at ERROR, and its staging object is
    copied to ``quarantine/`` (``quarantine_object``). The rejected set is a pure function of the pending objects, like
    the files. A rejected event's id is not "seen": a valid copy of it (later in the generation or in a delta) is
    committed once.
  * Raises ``StoreError`` (store unavailable), ``ManifestError`` (a corrupt manifest), ``ConflictingDataFile``,
    ``PoisonEnvelope`` (a corrupt staging object; not one that only breaks a newer landing rule, see
    ``decode_landed``): nothing is committed by the failing attempt; other partitions are
    unaffected.

Where to look: this module walks a partition (F1-F2 through ``replicator.scan``), commits generations (F4-F4'),
tells listeners (F5), writes ``_SUCCESS`` (F6) and deletes orphans. Step F3, the data files of one generation, their
TOKEN (``generation_token``), rejected events and ``quarantine/`` copies, is ``replicator.generation``; reading a
landed staging object (``decode_landed``) is ``replicator.landed``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from replicator import records
from replicator.claims import ClaimLost, PartitionClaims, Stopping, under_claim
from replicator.crash import CrashPoints
from replicator.generation import MAX_REJECTED_LISTED, GenerationWriter, generation_token
from replicator.layout import WHOLE, Layout, Partition, Shard, part_shard_generation
from replicator.manifest import Manifest
from replicator.metrics import Metrics
from replicator.plan import resolve_shards
from replicator.readahead import ordered_map
from replicator.scan import (
    NameSetDigest,
    PartitionState,
    ScanSchedule,
    partitions_to_finalize,
    read_partition,
    scope_covers,
)
from replicator.store import ObjectStore
from service import envelope as envelope_format
from service.catalog import Catalog

log = logging.getLogger(__name__)
MAX_RACE_RETRIES = 20
MAX_GENERATIONS_PER_CALL = 10
_READ_AHEAD_MAX_BYTES = 4 * 1024 * 1024  # data files read ahead 16 at a time only below this size
SUCCESS_FORMAT = "logpipe.success.v1"


class CommitListener(Protocol):
    """Told about each manifest this process commits (a latency hint; crash-safe consumers also scan the bucket)."""

    def on_commit(self, manifest: Manifest, manifest_name: str) -> None: ...


@dataclass(frozen=True, slots=True)
class FinalizeSettings:
    """``target_file_bytes``: approximate size of one data file. ``writer``: who commits (host:pid), for manifests.

    ``hot_window``: a pass that is not a full scan lists only the staging days of the hours from now - hot_window to
    now + 1 h; None (the default, and ``logpipe finalize``): every pass lists everything. ``full_scan_interval``: how
    often a pass lists everything anyway (``scan.ScanSchedule``)."""

    target_file_bytes: int = 128 * 1024 * 1024
    writer: str = "logpipe"
    lateness: dt.timedelta = dt.timedelta(minutes=10)
    hot_window: dt.timedelta | None = None
    full_scan_interval: dt.timedelta = dt.timedelta(hours=1)


def _no_tick() -> None:
    pass


@dataclass
class Finalizer:
    """Finalizes partitions of the catalog's categories in ``store``. No I/O until a method is called."""

    store: ObjectStore
    catalog: Catalog
    metrics: Metrics
    settings: FinalizeSettings = field(default_factory=FinalizeSettings)
    layout: Layout = field(default_factory=Layout)
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    crash: CrashPoints = field(default_factory=CrashPoints)
    listeners: list[CommitListener] = field(default_factory=list)
    failures: int = 0
    #: Complete partitions -> digest of the staging names their manifests consumed: O(1) memory per partition.
    _complete: dict[Partition, NameSetDigest] = field(default_factory=dict)
    #: Partitions in shards -> the digests of the shards this finalizer found with nothing pending; complete (moved to
    #: ``_complete``) once every shard's is there and they agree.
    _shards_done: dict[Partition, dict[int, NameSetDigest]] = field(default_factory=dict)
    #: ((partition, shard), generation G, event ids of generations 1..G of that shard) of the last shard worked on.
    _ids_cache: tuple[tuple[Partition, Shard] | None, int, set[str]] = field(default_factory=lambda: (None, 0, set()))
    sleep: Callable[[float], None] = field(default=time.sleep)
    #: Which passes list everything and which only the hot window (from ``settings``; first pass: everything).
    _schedule: ScanSchedule = field(init=False)
    #: Partitions whose last attempt failed, or a peer held: the next passes retry them even outside the hot window.
    _retry: set[Partition] = field(default_factory=set)
    #: When set, ``run_pass`` skips the partitions other workers' live claims hold (``replicator.claims``).
    claims: PartitionClaims | None = None
    #: True once the process is stopping: ``run_pass`` starts no partition and abandons the one it works on (between
    #: two objects; what it wrote is reused by the next attempt, or collected as orphans), releasing its claim.
    stopping: Callable[[], bool] = field(default=lambda: False)

    def __post_init__(self) -> None:
        self._schedule = ScanSchedule(self.settings.hot_window, self.settings.full_scan_interval)

    def run_pass(self, categories: Iterable[str], closable: Callable[[Partition], bool]) -> list[Manifest]:
        """One pass over ``categories``: finalize every closable partition that has pending staging objects.

        A full scan (``scan.ScanSchedule``: always without ``settings.hot_window``, else the first pass and then one
        pass every ``full_scan_interval``) lists every staging object; the other passes list only the staging days
        of the hot window, plus a direct retry of each closable partition whose last call failed or stopped at
        ``MAX_GENERATIONS_PER_CALL``, or that a peer's claim held. With ``claims``, a partition is worked on only
        under this worker's claim (renewed as it goes, released after). A listing error raises (a full scan then
        stays due); a failing partition is logged and counted, and the pass continues with the others. Memory:
        streamed listings, O(partitions) state (``scan.partitions_to_finalize``), then one partition at a time.
        """
        now = self.clock()
        days = self._schedule.days(now)
        committed: list[Manifest] = []
        for category in categories:
            todo = partitions_to_finalize(self.store, category, closable, self._complete, self.layout, days)
            retry = [p for p in self._retry if p.category == category and not scope_covers(p, days)]
            for p in todo + sorted(p for p in retry if closable(p)):
                if self.stopping() or not closable(p):  # (a stopping worker's ``closable`` is False too)
                    continue
                try:
                    again = False
                    for shard in self.shards(p):
                        if self.stopping():
                            raise Stopping("the worker is stopping")
                        work = partial(self.finalize_shard, p, shard)
                        got = under_claim(self.claims, p, self.stopping, work, shard)
                        if got is None:
                            again = True  # a live peer works on it; look again next pass (its claim may expire)
                            continue
                        committed += got
                        again = again or len(got) >= MAX_GENERATIONS_PER_CALL
                    (self._retry.add if again else self._retry.discard)(p)
                except (Stopping, ClaimLost) as exc:
                    self._retry.add(p)
                    log.info("finalize %s %s left: %s", p.category, p.hour.isoformat(), exc)
                except Exception as exc:  # one bad partition must not stop the others
                    self._retry.add(p)
                    self.failures += 1
                    self.metrics.finalize_errors.labels(type(exc).__name__).inc()
                    log.error("finalize %s %s failed: %r", p.category, p.hour.isoformat(), exc)
        self._schedule.completed(now, days)
        return committed

    def shards(self, p: Partition) -> tuple[Shard, ...]:
        """The shards ``p`` is finalized in: fixed by its plan (``replicator.plan``), created with the category's
        ``finalize_shards`` when nothing fixed it yet. Raises ``StoreError``, ``PlanError``."""
        want = self.catalog.category(p.category).finalize_shards
        return Shard.all(resolve_shards(self.store, self.layout, p, want, self.settings.writer, self.clock()))

    def finalize_partition(self, p: Partition, tick: Callable[[], None] = _no_tick) -> list[Manifest]:
        """``finalize_shard`` of every shard of ``p`` (``shards``), one after the other, in this thread."""
        return [m for shard in self.shards(p) for m in self.finalize_shard(p, shard, tick)]

    def finalize_shard(self, p: Partition, shard: Shard, tick: Callable[[], None] = _no_tick) -> list[Manifest]:
        """Commit every pending staging object of ``p``'s ``shard``, then ensure ``_SUCCESS`` (once every shard has
        committed a generation). See the module contract; a shard's generations are a partition's of their own.

        ``tick`` is called before each step that can take long (each object read, each data file written, each
        round); what it raises propagates, leaving the partition as a crash there would.

        Staging objects that keep arriving while it runs (late data, redeliveries) are committed as further
        generations, at most ``MAX_GENERATIONS_PER_CALL`` per call; the rest is left for the next pass. A lost commit
        race (another finalizer took the generation) is retried after a short jittered pause; ``RuntimeError`` after
        ``MAX_RACE_RETRIES`` losses in a row.
        """
        committed: list[Manifest] = []
        losses = 0
        while True:
            tick()
            state = read_partition(self.store, p, self.layout, shard)
            if not state.pending or len(committed) >= MAX_GENERATIONS_PER_CALL:
                self._ensure_success(state)
                self._collect_orphans(state)
                if not state.pending and (state.success or state.manifests):
                    self._shard_complete(p, shard, NameSetDigest.of(o.name for o in state.staging))
                return committed
            started = time.monotonic()
            result = self._commit_generation(state, tick)
            if result is None:
                losses += 1
                if losses >= MAX_RACE_RETRIES:
                    raise RuntimeError(f"{p}: lost {MAX_RACE_RETRIES} commit races in a row")
                self.sleep(random.uniform(0.0, min(2.0, 0.05 * 2**losses)))  # let the winner's peers finish
                continue
            losses = 0
            name, manifest = result
            committed.append(manifest)
            self.metrics.commit_seconds.observe(time.monotonic() - started)
            self.metrics.commits.labels(p.category).inc()
            self.crash.point("finalize.after_manifest")
            for listener in self.listeners:
                listener.on_commit(manifest, name)

    def _shard_complete(self, p: Partition, shard: Shard, digest: NameSetDigest) -> None:
        """Note that ``shard`` of ``p`` had nothing pending with the staging names of ``digest``; the partition is
        complete once every shard agrees."""
        if shard.count == 1:
            self._complete[p] = digest
            return
        done = self._shards_done.setdefault(p, {})
        done[shard.index] = digest
        if len(done) == shard.count and len(set(done.values())) == 1:
            self._complete[p] = digest
            del self._shards_done[p]

    def _prior_event_ids(self, state: PartitionState, tick: Callable[[], None] = _no_tick) -> set[str]:
        """The event ids of generations 1..G of the partition's shard (a fresh set the caller may change).

        Incremental: the ids of the last shard this finalizer worked on are cached with the generation they
        cover; committed generations never change, so only newer manifests' files are read.
        """
        p = state.partition
        key = (p, state.shard or WHOLE)
        category = self.catalog.category(p.category)
        cached_key, cached_gen, cached = self._ids_cache
        if cached_key != key or cached_gen > state.generation:
            cached_gen, cached = 0, set()
        ids = set(cached)
        files = [f for _, m in state.manifests if m.generation > cached_gen for f in m.files]
        # Many small delta files: overlap their reads. Large files (up to target_file_bytes): one at a time (G4).
        small = [f.name for f in files if f.bytes <= _READ_AHEAD_MAX_BYTES]
        large = (self.store.read(f.name) for f in files if f.bytes > _READ_AHEAD_MAX_BYTES)
        for data in itertools.chain(ordered_map(self.store.read, small, window=16), large):
            tick()
            ids.update(r["event_id"] for r in records.decode_rows(data, category))
        self._ids_cache = (key, state.generation, set(ids))
        return ids

    def _commit_generation(
        self, state: PartitionState, tick: Callable[[], None] = _no_tick
    ) -> tuple[str, Manifest] | None:
        """Steps F3-F4 for one generation. Returns (name, manifest) if committed (by us), None if we lost a race."""
        p = state.partition
        shard = state.shard or WHOLE
        category = self.catalog.category(p.category)
        generation = state.generation + 1
        sources = tuple(o.name for o in state.pending)
        token = generation_token(generation, sources, category, self.settings.target_file_bytes, shard)
        writer = GenerationWriter(
            self.store, self.layout, self.metrics, self.crash, self.settings.target_file_bytes, tick
        )
        # Step F3. ``seen`` (the ids of generations 1..G+1) becomes the id cache if this commit wins.
        out, seen = writer.write(state, category, generation, token, lambda: self._prior_event_ids(state, tick), shard)
        files = tuple(out.files)
        listed = tuple(out.rejected[:MAX_REJECTED_LISTED])
        manifest = Manifest(
            category=p.category,
            partition_hour=p.hour,
            generation=generation,
            token=token,
            files=files,
            total_events=sum(f.events for f in files),
            min_event_time=None if out.lo is None else envelope_format.rfc3339(records.micros_to_datetime(out.lo)),
            max_event_time=None if out.hi is None else envelope_format.rfc3339(records.micros_to_datetime(out.hi)),
            sources=sources,
            created=envelope_format.rfc3339(self.clock()),
            writer=self.settings.writer,
            duplicates_dropped=out.duplicates,
            rejected_total=out.rejected_total,
            rejected=listed,
            shard=shard,
        )
        name = self.layout.manifest(p, generation, shard)
        res = self.store.create_if_absent(name, manifest.to_json(), None, "application/json")
        if not res.created:
            theirs = Manifest.from_json(self.store.read(name))
            if theirs.token == token and theirs.sources == sources:
                log.info("manifest %s already commits these files (an earlier attempt, or a peer's merge)", name)
                return name, theirs
            log.info("lost the commit race for %s to %s; retrying as the next generation", name, theirs.writer)
            ours = set(manifest.file_names) - set(theirs.file_names)
            for orphan in sorted(ours):
                self.store.delete(orphan)
            return None
        self.metrics.objects_written.labels("manifest").inc()
        out.report(name, p.category, self.metrics, self.layout)
        self._ids_cache = ((p, shard), generation, seen)
        return name, manifest

    def _collect_orphans(self, state: PartitionState) -> None:
        """Delete part files of generations <= the committed one that no manifest names (a crashed or losing
        finalizer's output, including one of another TOKEN: an older code version, schema or target size). Safe: a
        generation number, once committed, can never commit other files. Per shard: ``state`` is one shard's view
        (its generations, its files)."""
        referenced = {f for _, m in state.manifests for f in m.file_names}
        for info in state.data_files:
            part = part_shard_generation(info.name)
            if info.name not in referenced and part is not None and part[1] <= state.generation:
                log.info("deleting orphan data file %s", info.name)
                self.store.delete(info.name)

    def _ensure_success(self, state: PartitionState) -> None:
        """Step F6: write ``_SUCCESS`` once generation 1 is committed (by every shard)."""
        if state.success or not state.manifests or not state.all_shards_committed:
            return
        p = state.partition
        body = {
            "format": SUCCESS_FORMAT,
            "category": p.category,
            "partition": p.hour.strftime("%Y-%m-%dT%H"),
            "first_manifest": self.layout.manifest(p, 1, Shard(0, state.shards)),
            "lateness_seconds": int(self.settings.lateness.total_seconds()),
            "created": envelope_format.rfc3339(self.clock()),
            "writer": self.settings.writer,
        }
        res = self.store.create_if_absent(
            self.layout.success_marker(state.partition), (json.dumps(body) + "\n").encode(), None, "application/json"
        )
        if res.created:
            self.metrics.objects_written.labels("success").inc()
