"""Object names in the landing bucket. Names are pure functions of their inputs: that is what makes landing idempotent.

Layout (public; see docs/formats.md):
  staging/<category>/YYYY/MM/DD/HH/<envelope_id>.pb.zst         one landed object per (envelope, hour): the envelope
                                                                format of service/envelope.py, attributes as metadata
  logs/<category>/YYYY/MM/DD/HH/part-g<GEN>-<TOKEN>-<NNNNN>.<ext>  committed data files of generation GEN; TOKEN
                                                                identifies the writer's input set, so two racing
                                                                finalizers never overwrite each other's files
  logs/<category>/YYYY/MM/DD/HH/_manifest-g<GEN>.json           commit record of generation GEN (atomic commit)
  logs/<category>/YYYY/MM/DD/HH/_SUCCESS                        completeness marker, after the first commit
  workers/<tier>/<writer>/<written_ms>-<watermark_ms>            a replicator's watermark heartbeat (watermarks.py)
  claims/<category>/YYYY/MM/DD/HH/e<EPOCH>                      a finalizer's advisory claim (claims.py)
  quarantine/<category>/YYYY/MM/DD/HH/<envelope_id>.pb.zst      copy of a staging object with events that have no
                                                                valid row (listed in the manifest's ``rejected``)
``GEN`` is a 4-digit, 1-based generation number; late data after a commit goes to generation GEN+1 (a delta).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

from service.catalog import FileFormat

EXTENSIONS = {FileFormat.AVRO: "avro", FileFormat.JSONL_GZ: "jsonl.gz"}
_MANIFEST_RE = re.compile(r"_manifest-g(\d{4})\.json$")


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

    def data_file(self, p: Partition, generation: int, token: str, index: int, fmt: FileFormat) -> str:
        return f"{self.partition_dir(p)}part-g{generation:04d}-{token}-{index:05d}.{EXTENSIONS[fmt]}"

    def manifest(self, p: Partition, generation: int) -> str:
        return f"{self.partition_dir(p)}_manifest-g{generation:04d}.json"

    def success_marker(self, p: Partition) -> str:
        return f"{self.partition_dir(p)}_SUCCESS"


def manifest_generation(name: str) -> int | None:
    """The generation number in a manifest object name, or None when ``name`` is not a manifest."""
    m = _MANIFEST_RE.search(name)
    return int(m.group(1)) if m else None


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
