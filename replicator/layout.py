"""Object names in the landing bucket. Names are pure functions of their inputs: that is what makes landing idempotent.

Layout (public; see docs/formats.md):
  staging/<category>/YYYY/MM/DD/HH/<envelope_id>.pb.zst         one landed object per (envelope, hour): the envelope
                                                                format of service/envelope.py, attributes as metadata
  logs/<category>/YYYY/MM/DD/HH/part-g<GEN>-<TOKEN>-<NNNNN>.<ext>  committed data files of generation GEN; TOKEN
                                                                identifies the writer's input set, so two racing
                                                                finalizers never overwrite each other's files
  logs/<category>/YYYY/MM/DD/HH/_manifest-g<GEN>.json           commit record of generation GEN (atomic commit)
  logs/<category>/YYYY/MM/DD/HH/_plan.json                      the partition's shard count, fixed before its first
                                                                commit (plan.py)
  logs/<category>/YYYY/MM/DD/HH/_SUCCESS                        completeness marker, after the first commit
  workers/<tier>/<writer>/<written_ms>-<watermark_ms>            a replicator's watermark heartbeat (watermarks.py)
  claims/<category>/YYYY/MM/DD/HH/e<EPOCH>                      a finalizer's advisory claim (claims.py)
  quarantine/<category>/YYYY/MM/DD/HH/<envelope_id>.pb.zst      copy of a staging object with events that have no
                                                                valid row (listed in the manifest's ``rejected``)
``GEN`` is a 4-digit, 1-based generation number; late data after a commit goes to generation GEN+1 (a delta).

A partition finalized in ``N > 1`` shards (``Shard``; the category's ``finalize_shards``, fixed per partition by
``_plan.json``) has one generation sequence per shard ``K`` (0-based), and the shard's label ``sKKofNN`` in its names:
``part-sKKofNN-g<GEN>-<TOKEN>-<NNNNN>.<ext>``, ``_manifest-sKKofNN-g<GEN>.json`` and ``claims/.../HH/sKKofNN/e<EPOCH>``.
Shard ``K`` commits exactly the events whose ``shard_of(event_id, N)`` is ``K``. With ``N = 1`` names carry no label.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from service.catalog import FileFormat

EXTENSIONS = {FileFormat.AVRO: "avro", FileFormat.JSONL_GZ: "jsonl.gz"}
_MANIFEST_RE = re.compile(r"(?:^|/)_manifest-(?:s(\d{2})of(\d{2})-)?g(\d{4})\.json$")
_PART_RE = re.compile(r"(?:^|/)part-(?:s(\d{2})of(\d{2})-)?g(\d{4})-")
#: Most shards a partition may have (two digits in the names).
MAX_SHARDS = 64


def shard_of(event_id: str, count: int) -> int:
    """The shard (0..count-1) that commits ``event_id``: the first 8 bytes of its BLAKE2b, big-endian, mod
    ``count``. Public (docs/formats.md): a function of the id alone, so every copy of an id meets the same shard."""
    if count == 1:
        return 0
    h = hashlib.blake2b(event_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "big") % count


@dataclass(frozen=True, slots=True, order=True)
class Shard:
    """Shard ``index`` of ``count`` of a partition. ``Shard()`` (0 of 1) is the whole partition: no label in names."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not (1 <= self.count <= MAX_SHARDS and 0 <= self.index < self.count):
            raise ValueError(f"shard {self.index} of {self.count}: needs 0 <= index < count <= {MAX_SHARDS}")

    @property
    def label(self) -> str:
        """``sKKofNN``; empty for the whole partition."""
        return "" if self.count == 1 else f"s{self.index:02d}of{self.count:02d}"

    def owns(self, event_id: str) -> bool:
        return self.count == 1 or shard_of(event_id, self.count) == self.index

    @staticmethod
    def all(count: int) -> tuple[Shard, ...]:
        return tuple(Shard(i, count) for i in range(count))


WHOLE = Shard()


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """A (category, UTC hour) partition. ``hour`` is timezone-aware and truncated to the hour."""

    category: str
    hour: dt.datetime

    @staticmethod
    def of(category: str, event_time: dt.datetime) -> Partition:
        """The partition holding an event of ``category`` at ``event_time`` (any timezone; converted to UTC)."""
        t = event_time.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        return Partition(category, t)

    @property
    def path(self) -> str:
        """``<category>/YYYY/MM/DD/HH``."""
        return f"{self.category}/{self.hour:%Y/%m/%d/%H}"

    @property
    def end(self) -> dt.datetime:
        return self.hour + dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Layout:
    """Prefixes of the bucket. ``logs`` holds committed data; ``staging`` holds landed, not yet merged, objects."""

    logs_prefix: str = "logs"
    staging_prefix: str = "staging"

    def staging_dir(self, p: Partition) -> str:
        return f"{self.staging_prefix}/{p.path}/"

    def staging_object(self, p: Partition, envelope_id: str) -> str:
        """The one name an envelope's events of partition ``p`` ever land under."""
        return f"{self.staging_dir(p)}{envelope_id}.pb.zst"

    def partition_dir(self, p: Partition) -> str:
        return f"{self.logs_prefix}/{p.path}/"

    def data_file(
        self, p: Partition, generation: int, token: str, index: int, fmt: FileFormat, shard: Shard = WHOLE
    ) -> str:
        return f"{self.partition_dir(p)}part-{_infix(shard)}g{generation:04d}-{token}-{index:05d}.{EXTENSIONS[fmt]}"

    def manifest(self, p: Partition, generation: int, shard: Shard = WHOLE) -> str:
        return f"{self.partition_dir(p)}_manifest-{_infix(shard)}g{generation:04d}.json"

    def plan(self, p: Partition) -> str:
        return f"{self.partition_dir(p)}_plan.json"

    def success_marker(self, p: Partition) -> str:
        return f"{self.partition_dir(p)}_SUCCESS"


def _infix(shard: Shard) -> str:
    return f"{shard.label}-" if shard.count > 1 else ""


def _shard(m: re.Match[str]) -> Shard | None:
    if m.group(1) is None:
        return WHOLE
    try:
        return Shard(int(m.group(1)), int(m.group(2)))
    except ValueError:
        return None  # e.g. s05of03: not a name this layout writes


def manifest_generation(name: str) -> int | None:
    """The generation number in a manifest object name (of any shard), or None when ``name`` is not a manifest."""
    m = _MANIFEST_RE.search(name)
    return int(m.group(3)) if m and _shard(m) is not None else None


def manifest_shard(name: str) -> Shard | None:
    """The shard of a manifest object name (``WHOLE`` when it has no label), or None when it is not a manifest."""
    m = _MANIFEST_RE.search(name)
    return _shard(m) if m else None


def part_shard_generation(name: str) -> tuple[Shard, int] | None:
    """(shard, generation) of a data file name, or None when ``name`` is not one."""
    m = _PART_RE.search(name)
    shard = _shard(m) if m else None
    return None if m is None or shard is None else (shard, int(m.group(3)))


def parse_partition_dir(path: str, prefix: str) -> Partition | None:
    """Inverse of ``partition_dir``/``staging_dir`` for an object name under ``prefix``; None if it does not match."""
    m = re.match(rf"^{re.escape(prefix)}/([a-z][a-z0-9_]*)/(\d{{4}})/(\d{{2}})/(\d{{2}})/(\d{{2}})/", path)
    if not m:
        return None
    y, mo, d, h = (int(x) for x in m.group(2, 3, 4, 5))
    return Partition(m.group(1), dt.datetime(y, mo, d, h, tzinfo=dt.UTC))


def days_between(start: dt.datetime, end: dt.datetime) -> Iterator[dt.date]:
    """Every UTC date from ``start`` to ``end`` inclusive: the day prefixes (``YYYY/MM/DD/``) a window lists."""
    d, last = start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date()
    while d <= last:
        yield d
        d += dt.timedelta(days=1)
