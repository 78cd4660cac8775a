"""``replicator.file_pipeline.FilePipeline``: the writer thread makes exactly the synchronous writer's files, surfaces
its errors in the caller's thread, writes nothing after a refused row, and holds a bounded number of rows."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import threading
import time
from concurrent.futures import CancelledError
from typing import Any

import pytest

from replicator.file_pipeline import FilePipeline, RefusedAt
from replicator.files import MAX_BLOCK_BYTES, MIN_BLOCK_BYTES, FileWriter, RowRefused, block_bytes
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.manifest import DataFile
from replicator.metrics import Metrics
from replicator.records import Row, decode_rows
from replicator.store import Created, MemoryStore
from replicator.synth import make_envelope
from service.catalog import Category, FileFormat, load_catalog

pytestmark = pytest.mark.unit

T0 = 1_764_162_000_000_000


def _cat(fmt: FileFormat) -> Category:
    return Category(name="cat_x", tier="core", file_format=fmt)


def _row(i: int) -> Row:
    return {
        "event_id": f"id-{i:06d}",
        "event_time": T0 + i,
        "ingest_time": None,
        "payload": json.dumps(
            {"n": i, "pad": "".join(hashlib.sha256(f"{i}-{k}".encode()).hexdigest() for k in range(8))}
        ),
        "attributes": "{}",
        "producer": "p",
        "client_id": None,
        "envelope_id": "e",
    }


def _writer(
    store: MemoryStore, fmt: FileFormat, target: int, seen: list[DataFile] | None = None, *, ahead: bool = False
) -> FileWriter:
    return FileWriter(
        store,
        _cat(fmt),
        target,
        lambda i: f"logs/part-{i:05d}",
        lambda f, created: seen.append(f) if seen is not None else None,
        upload_ahead=ahead,
    )


@pytest.mark.parametrize("ahead", [False, True], ids=["upload_inline", "upload_ahead"])
@pytest.mark.parametrize("fmt", list(FileFormat))
def test_pipeline_writes_the_synchronous_writers_files_byte_for_byte(fmt: FileFormat, ahead: bool) -> None:
    rows = [_row(i) for i in range(3000)]
    direct_store, piped_store = MemoryStore(), MemoryStore()
    direct = _writer(direct_store, fmt, 64 * 1024)
    for r in rows:
        direct.add(r)
    direct.flush()
    announced: list[DataFile] = []
    with FilePipeline(_writer(piped_store, fmt, 64 * 1024, announced, ahead=ahead), batch_rows=7) as pipe:
        for i, r in enumerate(rows):
            pipe.add(r, i)
        files = pipe.close()
    assert len(files) > 3  # several cuts, each decided on the writer thread
    assert files == direct.files == announced
    for f in files:
        assert piped_store.read(f.name) == direct_store.read(f.name)
    back = [r["event_id"] for f in files for r in decode_rows(piped_store.read(f.name), _cat(fmt))]
    assert back == [r["event_id"] for r in rows]


def test_a_refused_row_is_reported_with_its_key_and_nothing_after_it_reaches_a_file() -> None:
    store = MemoryStore()
    rows = [_row(i) for i in range(400)]
    rows[250]["event_time"] = "not a timestamp"  # fastavro refuses it mid-record
    with pytest.raises(RefusedAt) as info, FilePipeline(_writer(store, FileFormat.AVRO, 8 * 1024), batch_rows=16) as p:
        for i, r in enumerate(rows):
            p.add(r, ("src", i))
        p.close()
    assert info.value.key == ("src", 250)
    assert isinstance(info.value.refused, RowRefused)
    written = [
        r["event_id"] for o in store.list("logs/") for r in decode_rows(store.read(o.name), _cat(FileFormat.AVRO))
    ]
    assert written, "the files cut before the refused row are written"
    assert max(written) < "id-000250"


class _FailingStore(MemoryStore):
    def create_if_absent(self, name: str, data: bytes, metadata: Any, content_type: str) -> Created:
        raise ConnectionResetError("injected")


@pytest.mark.parametrize("ahead", [False, True], ids=["upload_inline", "upload_ahead"])
def test_a_store_error_on_the_writer_thread_is_raised_in_the_callers_thread(ahead: bool) -> None:
    pipe = FilePipeline(_writer(_FailingStore(), FileFormat.JSONL_GZ, 1024, ahead=ahead), batch_rows=4)
    with pytest.raises(ConnectionResetError):
        for i in range(10_000):
            pipe.add(_row(i), i)
        pipe.close()
    pipe.abandon()


class _BlockingStore(MemoryStore):
    """Every upload waits for ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def create_if_absent(self, name: str, data: bytes, metadata: Any, content_type: str) -> Created:
        self.release.wait(30)
        return super().create_if_absent(name, data, metadata, content_type)


def _big_row(i: int) -> Row:
    # more than one Avro block, and poorly compressible: every row cuts a 1 KiB-target file
    return {**_row(i), "payload": "".join(hashlib.sha256(f"{i}/{k}".encode()).hexdigest() for k in range(320))}


@pytest.mark.parametrize(("batch_rows", "batch_bytes"), [(10, 1 << 30), (10_000, 200_000)])
def test_rows_in_flight_are_bounded_by_rows_and_bytes_and_abandon_drops_the_queue(
    batch_rows: int, batch_bytes: int
) -> None:
    store = _BlockingStore()
    pipe = FilePipeline(_writer(store, FileFormat.AVRO, 1024), batch_rows=batch_rows, batch_bytes=batch_bytes, depth=2)
    added, stop = 0, threading.Event()

    def feed() -> None:
        nonlocal added
        with contextlib.suppress(CancelledError):  # abandon() from this test's thread cancels the feed's wait
            for i in range(10_000):
                if stop.is_set():
                    return
                pipe.add(_big_row(i), i)
                added += 1

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    time.sleep(0.5)
    try:
        # one batch is being written (blocked in its first upload), ``depth`` are queued, the feed waits for room
        assert 10 <= added < 3 * 10
        assert t.is_alive()
    finally:
        stop.set()
        store.release.set()
        pipe.abandon()  # cancels the queued batches; the one being written ends
        t.join(10)
    ids = [r["event_id"] for o in store.list("logs/") for r in decode_rows(store.read(o.name), _cat(FileFormat.AVRO))]
    assert ids and max(ids) < "id-000010", "only the batch being written reaches files"


def test_block_size_follows_the_target_within_bounds() -> None:
    assert block_bytes(1024) == MIN_BLOCK_BYTES
    assert block_bytes(1 << 20) == (1 << 20) // 16
    assert block_bytes(128 << 20) == MAX_BLOCK_BYTES


def test_the_finalizers_tick_never_runs_in_two_threads_at_once() -> None:
    """The merge ticks (renews its claim) before each staging object on its own thread and after each file on the
    writer thread; ``Claim.check`` is not reentrant, so the two must take turns."""
    store, hour = MemoryStore(), dt.datetime(2026, 11, 26, 11, tzinfo=dt.UTC)
    lander = Lander(store, ["ads_click"], Metrics())
    for i in range(60):
        env = make_envelope("ads_click", [f"e{i}-{k}" for k in range(20)], hour, payload_bytes=600)
        lander.land(env.data, env.attributes)
    active, overlaps, ticks = 0, 0, 0
    guard = threading.Lock()

    def tick() -> None:
        nonlocal active, overlaps, ticks
        with guard:
            active += 1
            overlaps += active > 1
            ticks += 1
        time.sleep(0.002)
        with guard:
            active -= 1

    f = Finalizer(store, load_catalog(), Metrics(), FinalizeSettings(target_file_bytes=4096))
    (m,) = f.finalize_partition(Partition("ads_click", hour), tick)
    assert m.total_events == 1200 and len(m.files) > 10
    assert ticks >= 60 + len(m.files)
    assert overlaps == 0


class _SlowStore(MemoryStore):
    """Uploads take 50 ms; records how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.active, self.most = 0, 0
        self._lock = threading.Lock()

    def create_if_absent(self, name: str, data: bytes, metadata: Any, content_type: str) -> Created:
        with self._lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.05)
        with self._lock:
            self.active -= 1
        return super().create_if_absent(name, data, metadata, content_type)


def test_upload_ahead_uploads_one_file_at_a_time_in_order_while_the_next_is_encoded() -> None:
    store, announced = _SlowStore(), []
    w = _writer(store, FileFormat.AVRO, 1024, announced, ahead=True)
    started = time.monotonic()
    for i in range(20):
        w.add(_big_row(i))  # each row cuts a file
    files = w.close()
    assert [f.name for f in files] == [f"logs/part-{i:05d}" for i in range(20)] == [f.name for f in announced]
    assert store.most == 1
    assert time.monotonic() - started >= 20 * 0.05
    assert [r["event_id"] for f in files for r in decode_rows(store.read(f.name), _cat(FileFormat.AVRO))] == [
        f"id-{i:06d}" for i in range(20)
    ]


def test_upload_ahead_holds_at_most_one_file_besides_the_one_being_encoded() -> None:
    store = _BlockingStore()
    w = _writer(store, FileFormat.AVRO, 1024, ahead=True)
    added = 0

    def feed() -> None:
        nonlocal added
        for i in range(50):
            w.add(_big_row(i))  # each row cuts a file
            added += 1

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    time.sleep(0.5)
    try:
        assert added == 1, "the first file uploads (blocked); the second cut waits for it"
    finally:
        store.release.set()
        t.join(10)
    assert len(w.close()) == 50
