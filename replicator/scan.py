"""Discover partitions, manifests and staging objects from the bucket alone (no in-process state).

Everything a loader or an operator needs survives any crash because it is derived from object listings:
  * ``read_partition`` -> ``PartitionState``: manifests, staging objects, pending (= staging not consumed by any
    manifest), ``_SUCCESS``.
  * ``list_manifests`` -> every committed manifest (what BigQuery loading scans).
  * ``list_open_staging`` -> staging objects not yet consumed by a manifest, per partition (the fresh path).
  * ``partitions_to_finalize`` + ``ScanSchedule`` -> what a finalizer pass commits, listing either every staging
    object (a full scan: the first pass of a process, then one pass every ``full_interval``) or only the staging
    days of the hot window (the other passes; docs/design.md, "Finalization", "Costs and bounds").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Collection, Iterable, Iterator, MutableMapping
from dataclasses import dataclass

from replicator.layout import (
    Layout,
    Partition,
    Shard,
    days_between,
    manifest_generation,
    manifest_shard,
    parse_partition_dir,
    part_shard_generation,
)
from replicator.manifest import Manifest
from replicator.plan import check_manifests, existing_shards, foreign_manifests
from replicator.readahead import ordered_map
from replicator.store import ObjectInfo, ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PartitionState:
    """A snapshot of one partition as the bucket shows it: all of it (``shard`` None), or one shard's view.

    A shard's view holds that shard's manifests and data files only; ``staging``, ``success``, ``shards`` and
    ``committed_shards`` (the shards with at least one manifest) are the partition's.
    """

    partition: Partition
    manifests: tuple[tuple[str, Manifest], ...]
    staging: tuple[ObjectInfo, ...]
    data_files: tuple[ObjectInfo, ...]
    success: bool
    shard: Shard | None = None
    shards: int = 1
    committed_shards: frozenset[int] | None = None

    @property
    def consumed(self) -> frozenset[str]:
        """Staging names consumed: by the shard's generations (a shard's view), or by every shard's (all of it)."""
        if self.shard is not None or self.shards == 1:
            return frozenset(s for _, m in self.manifests for s in m.sources)
        per_shard = [
            frozenset(s for _, m in self.manifests if m.shard == k for s in m.sources) for k in Shard.all(self.shards)
        ]
        return frozenset.intersection(*per_shard)

    @property
    def pending(self) -> tuple[ObjectInfo, ...]:
        """Staging objects not consumed yet (see ``consumed``), in name order."""
        consumed = self.consumed
        return tuple(o for o in self.staging if o.name not in consumed)

    @property
    def foreign(self) -> list[str]:
        """Manifests committed with a shard count other than the partition's plan (``plan.check_manifests``): a
        conflict a finalizer refuses to commit on top of, and ``logpipe partitions`` reports."""
        return foreign_manifests((n for n, _ in self.manifests), self.shards)

    @property
    def generation(self) -> int:
        """Highest committed generation (0 when none); a shard's own in a shard's view."""
        return max((m.generation for _, m in self.manifests), default=0)

    @property
    def all_shards_committed(self) -> bool:
        """Every shard of the partition has committed a generation (then ``_SUCCESS`` may be written)."""
        if self.committed_shards is None:
            return bool(self.manifests)
        return len(self.committed_shards) >= self.shards

    @property
    def state(self) -> str:
        """``open`` (no manifest), ``committed`` (manifests, and pending staging or no _SUCCESS), or ``complete``."""
        if not self.manifests:
            return "open"
        return "complete" if self.success and not self.pending else "committed"

    @property
    def committed_events(self) -> int:
        return sum(m.total_events for _, m in self.manifests)


def read_partition(
    store: ObjectStore, partition: Partition, layout: Layout | None = None, shard: Shard | None = None
) -> PartitionState:
    """List and read what ``partition`` holds: everything, or (``shard``) that shard's manifests and data files. The
    shard count comes from ``shard``, else from the partition's plan (``replicator.plan``). Raises
    ``StoreError``/``ManifestError``/``PlanError`` on failures; ``PlanError`` too, for a shard's view, when a
    manifest of the partition carries another shard count (``plan.check_manifests``: the finalizer's guard)."""
    lay = layout or Layout()
    names = list(store.list(lay.partition_dir(partition)))
    shards = shard.count if shard is not None else existing_shards(store, lay, partition, [i.name for i in names]) or 1
    if shard is not None:
        check_manifests(partition, shards, (i.name for i in names))
    manifest_names: list[str] = []
    committed: set[int] = set()
    data_files: list[ObjectInfo] = []
    success = False
    for info in names:
        if (ms := manifest_shard(info.name)) is not None and manifest_generation(info.name) is not None:
            if ms.count == shards:
                committed.add(ms.index)
            if shard is None or ms == shard:
                manifest_names.append(info.name)
        elif info.name == lay.success_marker(partition):
            success = True
        elif (part := part_shard_generation(info.name)) is not None and (shard is None or part[0] == shard):
            data_files.append(info)
    manifests = list(ordered_map(lambda n: (n, Manifest.from_json(store.read(n))), manifest_names))
    staging = tuple(store.list(lay.staging_dir(partition)))
    manifests.sort(key=lambda nm: (nm[1].shard, nm[1].generation))
    return PartitionState(
        partition, tuple(manifests), staging, tuple(data_files), success, shard, shards, frozenset(committed)
    )


def staged_partitions(store: ObjectStore, category: str, layout: Layout | None = None) -> dict[Partition, list[str]]:
    """Partition -> staging object names, for every partition of ``category`` with staging objects."""
    lay = layout or Layout()
    out: dict[Partition, list[str]] = {}
    for info in store.list(f"{lay.staging_prefix}/{category}/"):
        p = parse_partition_dir(info.name, lay.staging_prefix)
        if p is not None:
            out.setdefault(p, []).append(info.name)
    return out


@dataclass(frozen=True, slots=True)
class NameSetDigest:
    """A constant-size fingerprint of a set of object names: (count, XOR of 64-bit BLAKE2b hashes).

    Equal sets give equal digests; a set that gained a name gives a different one (a false match has probability
    about 2**-64). Staging objects are never deleted by finalization, so "the partition's staging names still match
    what the last commit consumed" is exactly "nothing new arrived".
    """

    count: int = 0
    xor: int = 0

    def add(self, name: str) -> NameSetDigest:
        h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
        return NameSetDigest(self.count + 1, self.xor ^ h)

    @staticmethod
    def of(names: Iterable[str]) -> NameSetDigest:
        d = NameSetDigest()
        for n in names:
            d = d.add(n)
        return d


def hot_days(now: dt.datetime, hot: dt.timedelta) -> tuple[dt.date, ...]:
    """The UTC days that hold the hours from ``now - hot`` to ``now + 1 h`` (the front-end accepts event times up to
    1 h ahead): the staging day prefixes a pass of the hot window lists, oldest first."""
    return tuple(days_between(now - hot, now + dt.timedelta(hours=1)))


@dataclass
class ScanSchedule:
    """Which finalizer passes list every staging object of a category (a *full scan*) and which list only the staging
    days of the hot window (``hot_days``).

    ``days(now)`` is None (full) when ``hot`` is None (every pass is full: ``logpipe finalize``), on the first pass
    of a process, once ``full_interval`` has passed since the last full scan that *completed*, and when the clock
    stepped back behind it; otherwise the hot window's days. ``completed(now, days)`` is called only after every
    category of a pass was listed without an error, so a full scan that failed to list stays due (the next pass is
    full again), like the loader's backfill (``replicator/bigquery/committed.py``).
    """

    hot: dt.timedelta | None = None
    full_interval: dt.timedelta = dt.timedelta(hours=1)
    last_full: dt.datetime | None = None

    def days(self, now: dt.datetime) -> tuple[dt.date, ...] | None:
        if self.hot is None or self.last_full is None:
            return None
        if not dt.timedelta(0) <= now - self.last_full < self.full_interval:
            return None
        return hot_days(now, self.hot)

    def completed(self, now: dt.datetime, days: tuple[dt.date, ...] | None) -> None:
        if days is None:
            self.last_full = now
            if self.hot is not None:
                log.info("finalizer full scan done; the next in %s", self.full_interval)


def scope_covers(p: Partition, days: Collection[dt.date] | None) -> bool:
    """Whether a listing of ``days`` (None: everything) lists every staging object of ``p``."""
    return days is None or p.hour.astimezone(dt.UTC).date() in days


def partitions_to_finalize(
    store: ObjectStore,
    category: str,
    closable: Callable[[Partition], bool],
    complete: MutableMapping[Partition, NameSetDigest],
    layout: Layout | None = None,
    days: Collection[dt.date] | None = None,
) -> list[Partition]:
    """The closable partitions of ``category`` that may have pending staging objects, in order.

    Streams one listing of ``staging/<category>/`` (or, with ``days``, one of ``staging/<category>/YYYY/MM/DD/`` per
    day: every object of those days, so each of their partitions is seen whole) and keeps O(partitions) state, never
    the object names: a partition that is not closable is skipped; one in ``complete`` (the digest of the staging
    names its manifests consumed) is returned only when its staging names no longer match that digest (late data
    arrived). Once the listing is through, the entries of ``complete`` for this category's partitions *inside the
    listed scope* that have no staging object any more (the bucket's lifecycle rule deleted them) are dropped, so a
    long-running worker keeps O(live partitions); entries outside the scope wait for the next full scan.
    """
    lay = layout or Layout()
    root = f"{lay.staging_prefix}/{category}/"
    prefixes = [root] if days is None else [f"{root}{d:%Y/%m/%d}/" for d in sorted(days)]
    seen: dict[Partition, NameSetDigest] = {}
    skip: set[Partition] = set()
    for prefix in prefixes:
        for info in store.list(prefix):
            p = parse_partition_dir(info.name, lay.staging_prefix)
            if p is None or p in skip:
                continue
            if not closable(p):
                skip.add(p)
                continue
            seen[p] = seen.get(p, NameSetDigest()).add(info.name)
    for gone in [
        p for p in complete if p.category == category and p not in seen and p not in skip and scope_covers(p, days)
    ]:
        del complete[gone]
    return sorted(p for p, d in seen.items() if complete.get(p) != d)


def committed_partitions(store: ObjectStore, category: str, layout: Layout | None = None) -> set[Partition]:
    """Partitions of ``category`` with at least one object under ``logs/``."""
    lay = layout or Layout()
    found = set()
    for info in store.list(f"{lay.logs_prefix}/{category}/"):
        p = parse_partition_dir(info.name, lay.logs_prefix)
        if p is not None:
            found.add(p)
    return found


def list_manifests(
    store: ObjectStore, categories: Iterable[str], layout: Layout | None = None
) -> Iterator[tuple[str, Manifest]]:
    """Every committed manifest of ``categories``, as (object name, Manifest), by category, partition, generation."""
    lay = layout or Layout()
    for category in categories:
        names = [i.name for i in store.list(f"{lay.logs_prefix}/{category}/") if manifest_generation(i.name)]
        for name in sorted(names):
            yield name, Manifest.from_json(store.read(name))


def list_open_staging(
    store: ObjectStore, category: str, layout: Layout | None = None
) -> dict[Partition, tuple[ObjectInfo, ...]]:
    """Staging objects of ``category`` not consumed yet (by every shard), per partition (partitions with none
    omitted)."""
    out: dict[Partition, tuple[ObjectInfo, ...]] = {}
    for p in sorted(staged_partitions(store, category, layout)):
        pending = read_partition(store, p, layout).pending
        if pending:
            out[p] = pending
    return out
