"""``FileWriter``: streams deduplicated rows of one generation into data files of about ``target_bytes`` each.

Deterministic by construction: for the same rows in the same order, the same file names and the same bytes come out
(gzip ``mtime=0``; Avro sync marker derived from the file name), which is what lets a finalizer that crashed after
some files (step F3) rerun and find its earlier files identical (412 + equal crc32c).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from replicator.errors import ReplicatorError
from replicator.manifest import DataFile
from replicator.records import Row, encode_rows
from replicator.store import ObjectStore, crc32c_b64
from service.catalog import Category, FileFormat

_ROW_OVERHEAD = 160  # bytes per row besides the payload: ids, timestamps, attributes (estimate)


class ConflictingDataFile(ReplicatorError):
    """A data file name exists with different bytes than this writer produced (a bug or a different code version)."""


def _estimate(row: Row) -> int:
    payload: Any = row.get("payload")
    return _ROW_OVERHEAD + (len(payload) if payload is not None else 0) + len(row.get("attributes") or "")


class FileWriter:
    """Collects rows and writes a file whenever the estimated encoded size reaches ``target_bytes``.

    The first file assumes a compression ratio of 0.5; later files use the ratio measured on the previous file
    (rounded, so the boundaries stay a pure function of the rows).
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
        self._rows: list[Row] = []
        self._raw = 0
        self._ratio = 0.5
        self.files: list[DataFile] = []

    def add(self, row: Row) -> None:
        """Buffer ``row``; writes a file when the buffer is full. Raises ``StoreError``/``ConflictingDataFile``."""
        self._rows.append(row)
        self._raw += _estimate(row)
        if self._raw * self._ratio >= self._target:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows (if any) as the next file."""
        if not self._rows:
            return
        name = self._name_of(len(self.files))
        marker = hashlib.sha256(name.encode()).digest()[:16]
        data = encode_rows(self._rows, self._category, sync_marker=marker)
        content_type = "avro/binary" if self._category.file_format is FileFormat.AVRO else "application/gzip"
        res = self._store.create_if_absent(name, data, None, content_type)
        crc = crc32c_b64(data)
        if not res.created and res.crc32c != crc:
            raise ConflictingDataFile(f"{name} exists with crc32c {res.crc32c}, this writer made {crc}")
        f = DataFile(name, len(self._rows), len(data), crc)
        self.files.append(f)
        self._ratio = round(max(0.01, min(1.5, len(data) / max(1, self._raw))), 2)
        self._rows = []
        self._raw = 0
        self._on_file(f, res.created)
