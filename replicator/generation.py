"""Step F3 of finalization (docs/design.md): write the data files of one generation of a partition, and name them.

``replicator.finalize`` decides which generation to write and commits it (F4, the manifest); this module turns the
pending staging objects into data files:
  * ``generation_token``: the TOKEN in the data file names, a hash of everything their bytes depend on.
  * ``GenerationWriter.write``: read the pending objects in name order (``landed.decode_landed``), dedup by event id,
    convert (``records.event_to_row``) and stream the rows into files (``files.FileWriter``). Deterministic: a rerun
    with the same inputs writes the same files under the same names (412 + equal crc32c = reuse).
  * Rejected events: an event without a valid row is not written, is counted by reason and listed (the first
    ``MAX_REJECTED_LISTED``), and its staging object is copied to ``quarantine/`` (``quarantine_object``).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import cast

from replicator import records
from replicator.crash import CrashPoints
from replicator.file_pipeline import FilePipeline, RefusedAt
from replicator.files import FileWriter, content_fingerprint
from replicator.landed import decode_landed
from replicator.layout import WHOLE, Layout, Shard
from replicator.manifest import DataFile, RejectedEvent
from replicator.metrics import Metrics
from replicator.readahead import ordered_map
from replicator.scan import PartitionState
from replicator.store import ObjectStore
from service.catalog import Category

log = logging.getLogger(__name__)
#: Rejected (unconvertible) events listed per manifest; ``rejected_total`` still counts them all (G4: bounded).
MAX_REJECTED_LISTED = 1000
#: Rows the encoder may refuse per generation (each costs a rewrite of the generation) before the partition fails.
MAX_ENCODER_REFUSALS = 20
QUARANTINE_PREFIX = "quarantine"
STAGING_CONTENT_TYPE = "application/vnd.logpipe.envelope+zstd"  # landing.CONTENT_TYPE


def generation_token(
    generation: int, sources: Iterable[str], category: Category, target_file_bytes: int, shard: Shard = WHOLE
) -> str:
    """TOKEN of the data file names of ``generation``: 16 hex digits of a SHA-256 over everything their bytes and
    boundaries depend on.

    The inputs are the generation (which also fixes the earlier generations whose event ids are skipped), the shard
    (only when the partition has more than one, so the tokens of unsharded partitions are unchanged), the sorted
    pending staging names (their content is immutable), and ``files.content_fingerprint``: file format, Avro schema,
    target file size, ``files.ENCODING_VERSION`` and the runtime. Contract: the data files are a pure function of
    these inputs, so a rerun with an equal TOKEN finds identical files (412 + equal crc32c = reuse), and any change
    that would change the bytes (a schema evolution during a rolling upgrade, a new target size, a new encoding) gives
    a new TOKEN, hence new names instead of ``ConflictingDataFile``. Whoever changes the encoding bumps
    ``ENCODING_VERSION``.
    """
    h = hashlib.sha256(f"g{generation}\n".encode())
    if shard.count > 1:
        h.update(f"{shard.label}\n".encode())
    h.update(content_fingerprint(category, target_file_bytes) + b"\n")  # compact JSON: no newline inside
    for s in sorted(sources):
        h.update(s.encode() + b"\n")
    return h.hexdigest()[:16]


def quarantine_object(staging_name: str, layout: Layout) -> str:
    """``quarantine/<category>/YYYY/MM/DD/HH/<envelope_id>.pb.zst``: where the raw bytes of a staging object with
    rejected events are kept (staging objects are deleted by the bucket's lifecycle rule)."""
    return f"{QUARANTINE_PREFIX}/{staging_name.removeprefix(layout.staging_prefix + '/')}"


def _reason(exc: Exception) -> tuple[str, str]:
    """(reason code, detail) of a conversion error; pure functions of the event, as the manifest needs."""
    if isinstance(exc, records.UnconvertibleEvent):
        return exc.reason, exc.detail
    return "conversion_error", f"{type(exc).__name__}: {exc}"[:300]


class _EncoderRefused(Exception):
    """``FileWriter.add`` refused a row that ``event_to_row`` produced (``files.RowRefused``): the generation is
    rewritten without that event."""

    def __init__(self, rejected: RejectedEvent) -> None:
        super().__init__(f"{rejected.source}[{rejected.index}] {rejected.event_id}: {rejected.detail}")
        self.rejected = rejected


@dataclass
class _Generation:
    """What ``GenerationWriter.write`` produced: files, counts, the event time range, the rejected events."""

    files: list[DataFile] = field(default_factory=list)
    duplicates: int = 0
    misplaced: int = 0
    lo: int | None = None
    hi: int | None = None
    rejected: list[RejectedEvent] = field(default_factory=list)  # the first MAX_REJECTED_LISTED (G4)
    rejected_total: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def report(self, name: str, category: str, metrics: Metrics, layout: Layout) -> None:
        """Count and log what the generation committed as manifest ``name``: misplaced, duplicate and rejected events
        (each listed rejected event at ERROR, with where its raw bytes are kept), then one INFO line."""
        if self.misplaced:
            metrics.misplaced_events.labels(category).inc(self.misplaced)
            log.warning("%s: %d events outside the partition's hour (wrong envelope attributes)", name, self.misplaced)
        if self.duplicates:
            metrics.duplicates_dropped.labels(category).inc(self.duplicates)
        for reason, n in sorted(self.rejected_by_reason.items()):
            metrics.unconvertible_events.labels(category, reason).inc(n)
        for r in self.rejected:
            log.error(
                "%s: event %s (#%d of %s) not committed, %s: %s; raw bytes in %s",
                name,
                r.event_id,
                r.index,
                r.source,
                r.reason,
                r.detail,
                quarantine_object(r.source, layout),
            )
        if self.rejected_total > len(self.rejected):
            log.error("%s: %d more unconvertible events not listed", name, self.rejected_total - len(self.rejected))
        log.info(
            "committed %s: %d events in %d files, %d duplicates dropped, %d rejected",
            name,
            sum(f.events for f in self.files),
            len(self.files),
            self.duplicates,
            self.rejected_total,
        )

    def reject(self, r: RejectedEvent) -> None:
        self.rejected_total += 1
        self.rejected_by_reason[r.reason] = self.rejected_by_reason.get(r.reason, 0) + 1
        if len(self.rejected) < MAX_REJECTED_LISTED:
            self.rejected.append(r)


def _refused(exc: RefusedAt) -> _EncoderRefused:
    """The ``_EncoderRefused`` for the row the pipeline refused (its key: source, event id, index)."""
    source, event_id, index = cast(tuple[str, str, int], exc.key)
    return _EncoderRefused(RejectedEvent(source, event_id, index, "encoding_error", str(exc.refused)))


@dataclass(frozen=True, slots=True)
class GenerationWriter:
    """Writes the data files of one generation into ``store`` (one writer per commit attempt). No I/O until
    ``write``. ``metrics`` count the objects written or found; ``crash`` has the ``finalize.after_data_file`` point."""

    store: ObjectStore
    layout: Layout
    metrics: Metrics
    crash: CrashPoints
    target_file_bytes: int
    #: Called before each staging object is decoded and after each data file is written (a finalization claim's
    #: renewal); what it raises propagates (the files written so far are reused by a rerun, or are orphans).
    tick: Callable[[], None] = lambda: None

    def write(
        self,
        state: PartitionState,
        category: Category,
        generation: int,
        token: str,
        prior_ids: Callable[[], set[str]],
        shard: Shard = WHOLE,
    ) -> tuple[_Generation, set[str]]:
        """Write generation ``generation`` of ``state``'s pending objects; blocks on the store. Returns what was
        written and ``seen``: the event ids of generations 1..``generation`` (a fresh ``prior_ids()``, the ids of
        generations before it, plus the ids written now).

        A row that ``event_to_row`` accepted but the encoder refused (a bug in records) rejects that event and the
        generation is rewritten without it; deterministic, so the files before it are reused (412 + crc). Raises
        ``_EncoderRefused`` after ``MAX_ENCODER_REFUSALS`` of them, and whatever the store, ``decode_landed`` or
        the file writer raise. Files written before an error stay as orphans (``Finalizer`` collects them).

        With a ``shard`` of more than one, only the events the shard owns (``Shard.owns``) are read past their
        envelope: the others are not this generation's, not counted, not rejected, not seen."""
        refused: dict[tuple[str, int], RejectedEvent] = {}
        while True:
            seen = prior_ids()
            try:
                return self._write(state, category, generation, token, seen, refused, shard), seen
            except _EncoderRefused as exc:
                if len(refused) >= MAX_ENCODER_REFUSALS:
                    raise
                refused[(exc.rejected.source, exc.rejected.index)] = exc.rejected

    def _write(
        self,
        state: PartitionState,
        category: Category,
        generation: int,
        token: str,
        seen: set[str],
        refused: dict[tuple[str, int], RejectedEvent],
        shard: Shard,
    ) -> _Generation:
        """Step F3: read the pending objects in name order, dedup, convert and write the files of ``generation``.

        Dedup comes first (a copy of an id already committed is a duplicate, whatever its content). An event without
        a row (``records.UnconvertibleEvent``, any other conversion error, or a key of ``refused``) is rejected: not
        written, not added to ``seen`` (so a valid copy of its id later in the partition is committed), counted, and
        its source copied to ``quarantine/``. Raises ``_EncoderRefused`` when the encoder refuses a row.
        """
        p = state.partition
        out = _Generation()

        lock = threading.Lock()

        def tick() -> None:  # called by this thread and the file writer's: a claim renews one at a time
            with lock:
                self.tick()

        def on_file(f: DataFile, created: bool) -> None:
            kind = self.metrics.objects_written if created else self.metrics.objects_existing
            kind.labels("data").inc()
            self.crash.point("finalize.after_data_file")
            tick()  # an upload of up to target_file_bytes can take long

        files = FileWriter(
            self.store,
            category,
            self.target_file_bytes,
            lambda i: self.layout.data_file(p, generation, token, i, category.file_format, shard),
            on_file,
            upload_ahead=True,
        )
        hour_start = int(p.hour.timestamp()) * 1_000_000
        sharded = shard.count > 1
        # The files are encoded and compressed on a thread of their own (``file_pipeline``), and uploaded on a third
        # while the next is encoded: zlib and uploads release the GIL, so this loop decodes the next rows meanwhile.
        # Read ahead (bounded): a partition may hold thousands of small staging objects; their round trips overlap.
        with FilePipeline(files) as writer:
            for obj, data in ordered_map(lambda o: (o, self.store.read(o.name)), state.pending, window=16):
                tick()
                env = decode_landed(data, obj.metadata)
                quarantined = False
                for index, event in enumerate(env.events):
                    if sharded and not shard.owns(event.event_id):
                        continue
                    if event.event_id in seen:
                        out.duplicates += 1
                        continue
                    rejected = refused.get((obj.name, index)) if refused else None
                    if rejected is None:
                        try:
                            records.check_landed_event(event, category.name)
                            row = records.event_to_row(event, category, env.envelope_id)
                        except MemoryError:
                            raise
                        except Exception as exc:  # no input may block the partition (G5); recorded, never dropped
                            rejected = RejectedEvent(obj.name, event.event_id, index, *_reason(exc))
                    if rejected is not None:
                        out.reject(rejected)
                        if not quarantined:
                            self._quarantine(obj.name, data, obj.metadata)
                            quarantined = True
                        continue
                    try:
                        writer.add(row, (obj.name, event.event_id, index))
                    except RefusedAt as exc:
                        raise _refused(exc) from exc
                    seen.add(event.event_id)
                    t = row["event_time"]
                    if not hour_start <= t < hour_start + 3_600_000_000:
                        out.misplaced += 1  # its envelope's min/max attributes lied; kept: never lost, never twice
                    out.lo = t if out.lo is None else min(out.lo, t)
                    out.hi = t if out.hi is None else max(out.hi, t)
            try:
                out.files = writer.close()
            except RefusedAt as exc:
                raise _refused(exc) from exc
        return out

    def _quarantine(self, source: str, data: bytes, metadata: Mapping[str, str]) -> None:
        """Keep the raw bytes of a staging object with rejected events past the staging lifecycle rule: a copy under
        ``quarantine/`` (same bytes and metadata; no lifecycle rule). Created only if absent, so reruns are free."""
        name = quarantine_object(source, self.layout)
        res = self.store.create_if_absent(name, data, dict(metadata), STAGING_CONTENT_TYPE)
        kind = self.metrics.objects_written if res.created else self.metrics.objects_existing
        kind.labels("quarantine").inc()
