"""The manifest: the commit record of one generation of a partition (``_manifest-gNNNN.json``).

Creating the manifest object (create-if-absent) IS the commit: a data file is visible to readers only once a manifest
names it. Manifests are immutable and kept forever; the union of all ``sources`` of a partition's manifests is the set
of staging objects already consumed (see docs/design.md, "Finalization").

JSON schema (``logpipe.manifest.v1``; public, see docs/formats.md)::

  {"format": "logpipe.manifest.v1", "category": "ads_click", "partition": "2026-11-26T13", "generation": 1,
   "token": "9f2c...", "files": [{"name": "logs/.../part-g0001-9f2c...-00000.avro", "events": 1000, "bytes": 12345,
   "crc32c": "AAAAAA=="}], "total_events": 1000, "min_event_time": "2026-11-26T13:00:00.000000Z",
   "max_event_time": "...", "duplicates_dropped": 3, "sources": ["staging/.../<envelope_id>.pb.zst", ...],
   "created": "2026-11-26T14:10:00.000000Z", "writer": "host:pid"}

``crc32c`` is base64 of the big-endian CRC32C, as GCS reports it. ``min/max_event_time`` are null when a generation has
no events (a delta whose events were all duplicates still commits, to mark its sources consumed).

Optional (written only when non-zero; absent means none, so every older manifest still parses): ``rejected_total``,
the number of events of the sources that were not committed because they have no valid row, and ``rejected``, those
events in the order they were met, listed up to a cap (``generation.MAX_REJECTED_LISTED``)::

  "rejected_total": 1, "rejected": [{"source": "staging/.../<envelope_id>.pb.zst", "index": 3,
   "event_id": "0193...", "reason": "payload_not_utf8", "detail": "payload byte 0: invalid start byte"}]

``index`` is the event's position in the source's envelope (its raw bytes: the source, or its copy under
``quarantine/``).

Optional, written only for a partition finalized in shards (``layout.Shard``; absent means 0 of 1): ``"shard": K,
"shards": N``. Such a manifest commits only the events of its ``sources`` whose ``layout.shard_of(event_id, N)`` is
``K``; a source is consumed by the partition once every shard's manifests list it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Final

from replicator.layout import Partition, Shard

FORMAT: Final = "logpipe.manifest.v1"
_PARTITION_FMT: Final = "%Y-%m-%dT%H"


class ManifestError(ValueError):
    """A manifest object that does not parse as ``logpipe.manifest.v1``."""


@dataclass(frozen=True, slots=True)
class DataFile:
    """One committed data file. ``name`` is the full object name in the bucket."""

    name: str
    events: int
    bytes: int
    crc32c: str


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    """Event number ``index`` of staging object ``source``, not committed because it has no valid row. ``reason`` is
    a short code (``records.UnconvertibleEvent.reason``), ``detail`` the specifics."""

    source: str
    event_id: str
    index: int
    reason: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "index": self.index,
            "event_id": self.event_id,
            "reason": self.reason,
            "detail": self.detail,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RejectedEvent:
        return RejectedEvent(
            source=str(d["source"]),
            event_id=str(d["event_id"]),
            index=int(d["index"]),
            reason=str(d["reason"]),
            detail=str(d.get("detail", "")),
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """Commit record of generation ``generation`` of ``partition``. Immutable once written."""

    category: str
    partition_hour: dt.datetime
    generation: int
    token: str
    files: tuple[DataFile, ...]
    total_events: int
    min_event_time: str | None
    max_event_time: str | None
    sources: tuple[str, ...]
    created: str
    writer: str
    duplicates_dropped: int = 0
    #: Number of rejected events (may exceed ``len(rejected)``: the listing is capped by the writer).
    rejected_total: int = 0
    rejected: tuple[RejectedEvent, ...] = ()
    #: Which shard of the partition this generation belongs to (``Shard()``: the whole partition).
    shard: Shard = field(default_factory=Shard)
    format: str = field(default=FORMAT)

    @property
    def partition(self) -> Partition:
        return Partition(self.category, self.partition_hour)

    @property
    def partition_label(self) -> str:
        """``YYYY-MM-DDTHH`` (UTC)."""
        return self.partition_hour.strftime(_PARTITION_FMT)

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": self.format,
            "category": self.category,
            "partition": self.partition_label,
            "generation": self.generation,
            "token": self.token,
            "files": [{"name": f.name, "events": f.events, "bytes": f.bytes, "crc32c": f.crc32c} for f in self.files],
            "total_events": self.total_events,
            "min_event_time": self.min_event_time,
            "max_event_time": self.max_event_time,
            "duplicates_dropped": self.duplicates_dropped,
        }
        if self.rejected_total or self.rejected:
            d["rejected_total"] = self.rejected_total
            d["rejected"] = [r.to_dict() for r in self.rejected]
        if self.shard.count > 1:
            d.update(shard=self.shard.index, shards=self.shard.count)
        d.update(sources=list(self.sources), created=self.created, writer=self.writer)
        return d

    def to_json(self) -> bytes:
        """UTF-8 JSON, keys in schema order, one trailing newline."""
        return (json.dumps(self.to_dict(), indent=1) + "\n").encode()

    @staticmethod
    def from_json(data: bytes | str) -> Manifest:
        """Parse a manifest object. Raises ``ManifestError`` for anything that is not a valid v1 manifest."""
        try:
            d = json.loads(data)
            if d.get("format") != FORMAT:
                raise ManifestError(f"format is {d.get('format')!r}, expected {FORMAT!r}")
            hour = dt.datetime.strptime(d["partition"], _PARTITION_FMT).replace(tzinfo=dt.UTC)
            files = tuple(
                DataFile(str(f["name"]), int(f["events"]), int(f["bytes"]), str(f["crc32c"])) for f in d["files"]
            )
            return Manifest(
                category=str(d["category"]),
                partition_hour=hour,
                generation=int(d["generation"]),
                token=str(d.get("token", "")),
                files=files,
                total_events=int(d["total_events"]),
                min_event_time=d.get("min_event_time"),
                max_event_time=d.get("max_event_time"),
                sources=tuple(str(s) for s in d["sources"]),
                created=str(d["created"]),
                writer=str(d["writer"]),
                duplicates_dropped=int(d.get("duplicates_dropped", 0)),
                rejected_total=int(d.get("rejected_total") or 0),
                rejected=tuple(RejectedEvent.from_dict(r) for r in d.get("rejected") or ()),
                shard=Shard(int(d.get("shard", 0)), int(d.get("shards", 1))),
            )
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"not a logpipe manifest: {exc!r}") from None
