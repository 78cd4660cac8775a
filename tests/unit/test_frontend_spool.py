"""The spool: fsync'd, ordered, bounded, crash-safe, and one owner at a time."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest

from service.envelope import EncodedEnvelope
from service.frontend import spool as spool_module
from service.frontend.errors import SpoolCorrupt, SpoolFull
from service.frontend.spool import MAGIC, Spool, SpoolLocked, deserialize, serialize

pytestmark = pytest.mark.unit


def env(i: int, size: int = 100) -> EncodedEnvelope:
    return EncodedEnvelope(f"env-{i}", "app_log", bytes([i % 256]) * size, {"envelope_id": f"env-{i}", "k": "v"}, i)


def test_round_trip_keeps_id_attributes_and_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    assert spool.open() == []
    for i in range(5):
        spool.write(env(i))
    entries = spool.entries()
    assert [e.envelope_id for e in entries] == [f"env-{i}" for i in range(5)]
    assert [spool.read(e) for e in entries] == [env(i) for i in range(5)]
    spool.close()
    # A new process (here: a new Spool) finds the same files in the same order and continues the sequence.
    again = Spool(tmp_path, 1 << 20)
    assert [e.envelope_id for e in again.open()] == [f"env-{i}" for i in range(5)]
    again.write(env(9))
    assert again.entries()[-1].envelope_id == "env-9" and again.depth == 6


def test_half_written_tmp_files_are_dropped_on_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.open()
    spool.write(env(1))
    spool.close()
    (tmp_path / "0000000000000002-env-2.tmp").write_bytes(serialize(env(2))[:50])
    again = Spool(tmp_path, 1 << 20)
    assert [e.envelope_id for e in again.open()] == ["env-1"]
    assert not list(tmp_path.glob("*.tmp"))


def test_corruption_is_detected_and_quarantined(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.open()
    entry = spool.write(env(1))
    blob = bytearray(entry.path.read_bytes())
    blob[30] ^= 0xFF
    entry.path.write_bytes(bytes(blob))
    with pytest.raises(SpoolCorrupt):
        spool.read(entry)
    dest = spool.quarantine(entry)
    assert dest.exists() and spool.depth == 0 and spool.bytes == 0


@pytest.mark.parametrize("cut", [0, 5, 20, -1])
def test_truncated_files_never_parse(cut: int) -> None:
    blob = serialize(env(3))
    with pytest.raises(SpoolCorrupt):
        deserialize(blob[:cut], "x")


def test_bound_raises_spool_full_and_remove_frees_space(tmp_path: Path) -> None:
    one = len(serialize(env(0)))
    spool = Spool(tmp_path, 2 * one)
    spool.open()
    spool.write(env(0))
    spool.write(env(1))
    with pytest.raises(SpoolFull) as err:
        spool.write(env(2))
    assert err.value.retry_after_s > 0
    spool.remove(spool.entries()[0])
    spool.write(env(2))
    assert [e.envelope_id for e in spool.entries()] == ["env-1", "env-2"]


def test_one_owner_at_a_time(tmp_path: Path) -> None:
    first = Spool(tmp_path, 1 << 20)
    first.open()
    with pytest.raises(SpoolLocked):
        Spool(tmp_path, 1 << 20).open()
    first.close()
    Spool(tmp_path, 1 << 20).open()


def test_directory_is_empty_when_nothing_waits(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 1 << 20)
    spool.open()
    entry = spool.write(env(1))
    spool.remove(entry)
    assert list((tmp_path / "spool").iterdir()) == []  # the lock lives next to the directory


def test_quarantine_into_a_named_folder_keeps_the_file_intact(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.open()
    entry = spool.write(env(1))
    spool.write(env(2))
    dest = spool.quarantine(entry, "unknown-category")
    assert dest.parent == tmp_path / "unknown-category" and dest.name == entry.path.name
    assert deserialize(dest.read_bytes(), str(dest)) == env(1)  # moved, byte for byte, not deleted
    assert [e.envelope_id for e in spool.entries()] == ["env-2"] and spool.bytes == spool.entries()[0].size


@pytest.mark.parametrize("header", [b"[]", b'{"envelope_id":"x"}', b'{"envelope_id":"x","category":"c",'
                                    b'"attributes":{},"event_count":"many"}'])  # fmt: skip
def test_crc_valid_file_with_a_foreign_header_is_corrupt(header: bytes) -> None:
    body = b"".join((MAGIC, struct.pack(">I", len(header)), header, struct.pack(">Q", 1), b"d"))
    with pytest.raises(SpoolCorrupt):
        deserialize(body + struct.pack(">I", zlib.crc32(body)), "x")


def test_write_fsyncs_the_file_before_the_rename_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # G1 across a power loss (a SIGKILL keeps the page cache, so only the calls can show it): the entry's bytes are
    # on disk before its name appears, and the name is on disk before the client is acked.
    calls: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> None:
        calls.append(("rename", str(b)))
        real_rename(a, b)

    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    monkeypatch.setattr(spool_module.os, "rename", rename)
    s = Spool(tmp_path / "spool", 1 << 20)
    s.open()
    calls.clear()
    entry = s.write(env(1))
    assert [c[0] for c in calls] == ["fsync", "rename", "fsync"]
    assert calls[0][1].endswith(".tmp") and calls[1][1] == str(entry.path) and calls[2][1] == str(tmp_path / "spool")


def test_a_failed_directory_fsync_leaves_no_file_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The envelope is reported not durable (its events are not acked), so its file must not be replayed later."""
    s = Spool(tmp_path / "spool", 1 << 20)
    s.open()

    def fail(_d: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(spool_module, "_fsync_dir", fail)
    with pytest.raises(OSError):
        s.write(env(1))
    assert s.depth == 0 and s.bytes == 0
    assert not list((tmp_path / "spool").iterdir())
