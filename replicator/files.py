"""``FileWriter``: streams deduplicated rows of one generation into data files of about ``target_bytes`` each.

Deterministic by construction: for the same rows in the same order, the same file names and the same bytes come out
(gzip ``mtime=0``; Avro sync marker derived from the file name; cuts decided on encoded sizes), which is what lets a
finalizer that crashed after some files (step F3) rerun and find its earlier files identical (412 + equal crc32c).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from replicator.errors import ReplicatorError
from replicator.manifest import DataFile
from replicator.records import Row, RowFileWriter
from replicator.store import ObjectStore, crc32c_b64
from service.catalog import Category, FileFormat


class ConflictingDataFile(ReplicatorError):
    """A data file name exists with different bytes than this writer produced (a bug or a different code version)."""


class FileWriter:
    """Streams rows into the current file and writes it once its encoded size reaches ``target_bytes``.

    Memory: one file's encoded bytes (plus one Avro block), never the rows as Python objects. The cut points depend
    only on the encoded bytes, so they are deterministic.
    """

    def __init__(
        self,
        store: ObjectStore,
        category: Category,
        target_bytes: int,
        name_of: Callable[[int], str],
        on_file: Callable[[DataFile, bool], None],
    ) -> None:
        self._store = store
        self._category = category
        self._target = max(1, target_bytes)
        self._name_of = name_of
        self._on_file = on_file
        self._current: RowFileWriter | None = None
        self.files: list[DataFile] = []

    def add(self, row: Row) -> None:
        """Append ``row``; writes a file when it is full. Raises ``StoreError``/``ConflictingDataFile``."""
        if self._current is None:
            marker = hashlib.sha256(self._name_of(len(self.files)).encode()).digest()[:16]
            self._current = RowFileWriter(self._category, sync_marker=marker)
        self._current.write(row)
        if self._current.size >= self._target:
            self.flush()

    def flush(self) -> None:
        """Write the current file (if it has rows)."""
        if self._current is None or not self._current.rows:
            return
        name = self._name_of(len(self.files))
        rows = self._current.rows
        data = self._current.finish()
        self._current = None
        content_type = "avro/binary" if self._category.file_format is FileFormat.AVRO else "application/gzip"
        res = self._store.create_if_absent(name, data, None, content_type)
        crc = crc32c_b64(data)
        if not res.created and res.crc32c != crc:
            raise ConflictingDataFile(f"{name} exists with crc32c {res.crc32c}, this writer made {crc}")
        f = DataFile(name, rows, len(data), crc)
        self.files.append(f)
        self._on_file(f, res.created)
