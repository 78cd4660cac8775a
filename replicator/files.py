"""``FileWriter``: streams deduplicated rows of one generation into data files of about ``target_bytes`` each.

Deterministic by construction: for the same rows in the same order, the same file names and the same bytes come out
(gzip ``mtime=0``; Avro sync marker derived from the file name; cuts decided on encoded sizes), which is what lets a
finalizer that crashed after some files (step F3) rerun and find its earlier files identical (412 + equal crc32c).
The bytes are a pure function of the rows and of ``content_fingerprint`` (format, schema, target size, encoding
version, runtime), which is why that fingerprint is part of the TOKEN of data file names (``generation_token``).
"""

from __future__ import annotations

import hashlib
import json
import platform
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

import fastavro

from replicator.errors import ReplicatorError
from replicator.manifest import DataFile
from replicator.records import DEFAULT_BLOCK_BYTES, Row, RowFileWriter, avro_schema
from replicator.store import ObjectStore, crc32c_b64
from service.catalog import Category, FileFormat

#: Version of the data file encoding. Bump it in the same change as anything that can alter the bytes or the cut
#: points this module writes for the same rows and the same ``content_fingerprint`` inputs: ``records.event_to_row``
#: (values, NULL rules), ``records.RowFileWriter`` (codec, compression level, JSON layout, timestamp text) or, here,
#: the cut rule or the sync marker derivation. It is part of the TOKEN, so a new version never reuses, and never
#: conflicts with, the part files an older version left behind when it crashed before its commit.
#: History: 3 -- Avro blocks of ``block_bytes(target)`` (up to 256 KiB) instead of fastavro's 16,000 bytes;
#: 2 -- events without a valid row are rejected (not written) and unrepresentable extracted fields are NULL;
#: version 1 wrote some of them (an Avro file with an out-of-range event_time) before failing the whole generation.
ENCODING_VERSION: Final = 3
#: Avro block bounds: 256 KiB blocks deflate ~15 % faster than 16 KB ones and hand zlib, which releases the GIL,
#: work in pieces long enough for ``file_pipeline``'s writer thread to overlap with the decoding thread.
MIN_BLOCK_BYTES, MAX_BLOCK_BYTES = DEFAULT_BLOCK_BYTES, 256 * 1024


def block_bytes(target_bytes: int) -> int:
    """The Avro block size for files of ``target_bytes``: 1/16 of it within [MIN_BLOCK_BYTES, MAX_BLOCK_BYTES], so a
    file's size overshoots its target by a small fraction whatever the target."""
    return min(MAX_BLOCK_BYTES, max(MIN_BLOCK_BYTES, target_bytes // 16))


def content_fingerprint(category: Category, target_bytes: int) -> bytes:
    """Canonical JSON of everything besides the rows that decides the bytes and boundaries of ``FileWriter``'s files.

    That is: ``ENCODING_VERSION``; the file format; the full Avro schema as JSON with sorted keys (it also encodes the
    payload format, the extracted fields, their types and order, and the annotations written into Avro headers --
    Avro's Parsing Canonical Form would drop ``default``/``logicalType``/``sqlType``, so it is not used); the target
    size; and the runtime whose output is not pinned by our code (Python: ``GzipFile`` buffering moves gzip cut points
    between versions; zlib: deflate bytes; fastavro: block layout).
    """
    parts = {
        "encoding": ENCODING_VERSION,
        "format": category.file_format.value,
        "schema": avro_schema(category),
        "target_bytes": max(1, target_bytes),
        "python": platform.python_version(),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "fastavro": fastavro.__version__,
    }
    return json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()


class ConflictingDataFile(ReplicatorError):
    """A data file name exists with different bytes than this writer produced.

    The TOKEN covers every input of the bytes, so this means a bug: an encoding change shipped without an
    ``ENCODING_VERSION`` bump, or non-deterministic output.
    """


class RowRefused(ReplicatorError):
    """The encoder refused a row (a row ``records.event_to_row`` should not have produced: a bug there). The current
    file may hold part of the row, so the writer must not be used afterwards."""


class FileWriter:
    """Streams rows into the current file and writes it once its encoded size reaches ``target_bytes``.

    Memory: one file's encoded bytes (plus one Avro block), never the rows as Python objects; with
    ``upload_ahead``, also the file being uploaded. The cut points depend only on the encoded bytes, so they are
    deterministic.

    ``upload_ahead``: each cut file is uploaded on a thread of the writer's own while the next one is encoded, at
    most one upload at a time, in order; ``on_file`` then runs on that thread. An upload's error is raised by the
    next ``flush`` (a cut) or by ``close``; ``files`` is complete only after ``close``.
    """

    def __init__(
        self,
        store: ObjectStore,
        category: Category,
        target_bytes: int,
        name_of: Callable[[int], str],
        on_file: Callable[[DataFile, bool], None],
        *,
        upload_ahead: bool = False,
    ) -> None:
        self._store = store
        self._category = category
        self._target = max(1, target_bytes)
        self._name_of = name_of
        self._on_file = on_file
        self._current: RowFileWriter | None = None
        self._cut = 0  # files cut so far (``files`` may lag behind it by the upload in flight)
        self._uploads = ThreadPoolExecutor(1, thread_name_prefix="file-upload") if upload_ahead else None
        self._uploading: Future[None] | None = None
        self.files: list[DataFile] = []

    def add(self, row: Row) -> None:
        """Append ``row``; writes a file when it is full. Raises ``StoreError``/``ConflictingDataFile``, and
        ``RowRefused`` (with the encoder's error as ``__cause__``) when the row does not encode."""
        if self._current is None:
            marker = hashlib.sha256(self._name_of(self._cut).encode()).digest()[:16]
            self._current = RowFileWriter(self._category, sync_marker=marker, block_bytes=block_bytes(self._target))
        try:
            self._current.write(row)
        except MemoryError:
            raise
        except Exception as exc:
            raise RowRefused(f"{type(exc).__name__}: {exc}"[:300]) from exc
        if self._current.size >= self._target:
            self.flush()

    def flush(self) -> None:
        """Cut the current file (if it has rows) and upload it: here, or with ``upload_ahead`` once the upload in
        flight has ended (raising its error)."""
        if self._current is None or not self._current.rows:
            return
        name = self._name_of(self._cut)
        rows = self._current.rows
        data = self._current.finish()
        self._current = None
        self._cut += 1
        if self._uploads is None:
            self._upload(name, rows, data)
            return
        self._wait()
        self._uploading = self._uploads.submit(self._upload, name, rows, data)

    def close(self) -> list[DataFile]:
        """Cut the last file, wait for every upload (raising an error of any) and return the files in order."""
        try:
            self.flush()
            self._wait()
        finally:
            self.abandon()
        return list(self.files)

    def abandon(self) -> None:
        """Stop the upload thread (the upload in flight, if any, ends in the background)."""
        if self._uploads is not None:
            self._uploads.shutdown(wait=False)

    def _wait(self) -> None:
        if self._uploading is not None:
            f, self._uploading = self._uploading, None
            f.result()

    def _upload(self, name: str, rows: int, data: bytes) -> None:
        content_type = "avro/binary" if self._category.file_format is FileFormat.AVRO else "application/gzip"
        res = self._store.create_if_absent(name, data, None, content_type)
        crc = crc32c_b64(data)
        if not res.created and res.crc32c != crc:
            raise ConflictingDataFile(f"{name} exists with crc32c {res.crc32c}, this writer made {crc}")
        f = DataFile(name, rows, len(data), crc)
        self.files.append(f)
        self._on_file(f, res.created)
