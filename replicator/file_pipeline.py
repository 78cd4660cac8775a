"""``FilePipeline``: runs a ``files.FileWriter`` on a thread of its own, so that one partition's merge uses two cores.

Finalizing one partition (step F3) is a loop of GIL-bound Python (read, decode, dedup, ``records.event_to_row``) and
encoding (fastavro's record encoding, then deflate or gzip). zlib releases the GIL while it compresses, which is
about a third of a row's cost with 1 KiB log lines, so handing the rows to a writer thread overlaps compression and
uploads with the decoding of the next rows (``logpipe bench replicate``'s finalize figure; docs/replicator-perf.md).

Contract:
  * Rows reach the ``FileWriter`` in the order ``add`` was called, from one thread, so the files are exactly those
    the writer would make in the caller's thread (same cuts, same bytes: ``files`` is deterministic).
  * Memory: at most ``depth`` batches queued or being written plus the one being filled; a batch closes at
    ``batch_rows`` rows or ``batch_bytes`` of payload, so the bound holds for large events too (G4).
  * An error of the writer thread (the store's, ``ConflictingDataFile``, what ``on_file`` raises) is raised in the
    caller's thread by the next ``add`` or by ``close``. ``RowRefused`` is raised as ``RefusedAt`` with the key the
    caller gave that row. After an error the pipeline must not be used, except for ``abandon``.
  * ``close`` writes the last file and returns every file; ``abandon`` stops at the end of the batch being written
    and leaves an upload in flight to end in the background (what was uploaded stays, as after a crash: reused by a
    rerun or collected as an orphan). Use the pipeline as a context manager so that an exception in the caller
    always abandons it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any

from replicator.errors import ReplicatorError
from replicator.files import FileWriter, RowRefused
from replicator.manifest import DataFile
from replicator.records import Row


class RefusedAt(ReplicatorError):
    """The writer refused the row added with ``key`` (``RowRefused`` is the ``__cause__``)."""

    def __init__(self, key: Hashable, refused: RowRefused) -> None:
        super().__init__(str(refused))
        self.key = key
        self.refused = refused


class FilePipeline:
    """Feeds rows to ``writer`` on one background thread. Not thread-safe: one caller thread."""

    def __init__(self, writer: FileWriter, *, batch_rows: int = 256, batch_bytes: int = 4 << 20, depth: int = 2):
        if batch_rows < 1 or batch_bytes < 1 or depth < 1:
            raise ValueError("batch_rows, batch_bytes and depth must be >= 1")
        self._writer = writer
        self._batch_rows = batch_rows
        self._batch_bytes = batch_bytes
        self._depth = depth
        self._batch: list[tuple[Row, Hashable]] = []
        self._bytes = 0
        self._inflight: deque[Future[None]] = deque()
        self._broken = False  # set by the writer thread on its first error: later batches write nothing
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-writer")

    def add(self, row: Row, key: Hashable) -> None:
        """Queue ``row``; blocks while ``depth`` batches are in flight. Raises an earlier batch's error."""
        self._batch.append((row, key))
        payload = row.get("payload")
        self._bytes += len(payload) if isinstance(payload, (str, bytes)) else 0
        if len(self._batch) >= self._batch_rows or self._bytes >= self._batch_bytes:
            self._submit()

    def close(self) -> list[DataFile]:
        """Write everything added, then the last file; returns the files in order. Raises any batch's error."""
        self._submit()
        self._inflight.append(self._pool.submit(self._guarded, self._writer.close))
        while self._inflight:
            self._inflight.popleft().result()
        self._pool.shutdown(wait=True)
        return list(self._writer.files)

    def abandon(self) -> None:
        """Drop what is queued; waits for the batch being written to end (its errors are ignored)."""
        for f in self._inflight:
            f.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._inflight.clear()
        self._writer.abandon()

    def __enter__(self) -> FilePipeline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.abandon()

    def _submit(self) -> None:
        if self._batch:
            self._inflight.append(self._pool.submit(self._guarded, self._write, self._batch))
            self._batch, self._bytes = [], 0
        while len(self._inflight) > self._depth or (self._inflight and self._inflight[0].done()):
            self._inflight.popleft().result()

    def _guarded(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn`` unless an earlier batch failed: a writer that raised may hold part of a row, so nothing after
        it may reach a file."""
        if self._broken:
            return
        try:
            fn(*args)
        except BaseException:
            self._broken = True
            raise

    def _write(self, batch: list[tuple[Row, Hashable]]) -> None:
        for row, key in batch:
            try:
                self._writer.add(row)
            except RowRefused as exc:
                raise RefusedAt(key, exc) from exc
