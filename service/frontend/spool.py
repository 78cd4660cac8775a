"""The on-disk spool: envelopes that Pub/Sub could not take, kept until a later publish is confirmed.

Contract:
  * ``write`` returns only after the file is complete on disk: written to ``<name>.tmp``, fsync'd, renamed to
    ``<name>.env``, and the directory fsync'd. A crash at any point leaves either no ``.env`` file or a complete
    one; ``open`` deletes leftover ``.tmp`` files. Only after ``write`` returns may the envelope's events be acked.
  * Files are named ``<16-digit sequence>-<envelope_id>.env``; ``entries`` lists them oldest first, so replay keeps
    the order of writes. The envelope keeps its ``envelope_id`` and attributes byte for byte.
  * The spool is bounded by ``max_bytes``; ``write`` raises ``SpoolFull`` past it.
  * Each file ends with a CRC32 of everything before it. ``read`` raises ``SpoolCorrupt`` on a bad file; the caller
    moves it aside with ``quarantine`` (never silently deleted), into ``corrupt/``, or another sub-directory named
    for the reason (``unknown-category/`` for an envelope whose category left the catalog).
  * One process owns a spool directory at a time (``flock`` on ``<directory>.lock``, a sibling file, so the directory
    itself holds nothing but envelopes: it is empty exactly when nothing waits for Pub/Sub); ``open`` raises
    ``SpoolLocked`` otherwise.
  * Thread-safe.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from service.envelope import EncodedEnvelope
from service.frontend.errors import FrontendError, SpoolCorrupt, SpoolFull

MAGIC = b"LPSPOOL1"
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class SpoolLocked(FrontendError):
    """Another live process owns this spool directory."""


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One complete spool file."""

    path: Path
    seq: int
    envelope_id: str
    size: int


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_durable_dirs(d: Path) -> None:
    """``mkdir -p d``, fsyncing the parent of every directory it creates (outermost first)."""
    missing: list[Path] = []
    p = d
    while not p.exists():
        missing.append(p)
        p = p.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        _fsync_dir(new.parent)


def serialize(env: EncodedEnvelope) -> bytes:
    """The spool file body for ``env`` (magic, header JSON, data, CRC32)."""
    header = json.dumps(
        {"envelope_id": env.envelope_id, "category": env.category, "attributes": env.attributes,
         "event_count": env.event_count}, separators=(",", ":"),
    ).encode()  # fmt: skip
    body = b"".join((MAGIC, _U32.pack(len(header)), header, _U64.pack(len(env.data)), env.data))
    return body + _U32.pack(zlib.crc32(body))


def deserialize(blob: bytes, where: str) -> EncodedEnvelope:
    """Parse a spool file body. Raises ``SpoolCorrupt``."""
    if len(blob) < len(MAGIC) + 16 or not blob.startswith(MAGIC):
        raise SpoolCorrupt(where, "bad magic or truncated")
    body, crc = blob[:-4], _U32.unpack(blob[-4:])[0]
    if zlib.crc32(body) != crc:
        raise SpoolCorrupt(where, "crc mismatch")
    pos = len(MAGIC)
    (hlen,) = _U32.unpack_from(body, pos)
    pos += 4
    try:
        header = json.loads(body[pos : pos + hlen])
    except ValueError:
        raise SpoolCorrupt(where, "bad header") from None
    pos += hlen
    if pos + 8 > len(body):
        raise SpoolCorrupt(where, "length mismatch")
    (dlen,) = _U64.unpack_from(body, pos)
    pos += 8
    data = body[pos : pos + dlen]
    if len(data) != dlen or pos + dlen != len(body):
        raise SpoolCorrupt(where, "length mismatch")
    try:  # a CRC-valid file with a foreign header (another writer) is corrupt too, not a crash of the replayer
        return EncodedEnvelope(header["envelope_id"], header["category"], data,
                               dict(header["attributes"]), int(header["event_count"]))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise SpoolCorrupt(where, "bad header fields") from None


class Spool:
    """A bounded directory of fsync'd envelopes. Call ``open`` before use (it does the I/O, not the constructor)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: dict[int, SpoolEntry] = {}
        self._bytes = 0
        self._seq = 0
        self._lock_fd: int | None = None

    def open(self) -> list[SpoolEntry]:
        """Create/lock the directory, drop half-written files, and index what is there (oldest first). Each directory
        it creates is fsync'd into its parent: a spooled envelope's path survives a host crash, not only its bytes."""
        _make_durable_dirs(self.directory)
        fd = os.open(self.directory.with_name(self.directory.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SpoolLocked(f"spool {self.directory} is in use by another process") from None
        self._lock_fd = fd
        for tmp in self.directory.glob("*.tmp"):
            tmp.unlink()
        for p in self.directory.glob("*.env"):
            seq_s, _, eid = p.stem.partition("-")
            if not seq_s.isdigit():
                continue
            entry = SpoolEntry(p, int(seq_s), eid, p.stat().st_size)
            self._entries[entry.seq] = entry
            self._bytes += entry.size
            self._seq = max(self._seq, entry.seq)
        return self.entries()

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def depth(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def entries(self) -> list[SpoolEntry]:
        """Complete files, oldest first."""
        with self._lock:
            return [self._entries[k] for k in sorted(self._entries)]

    def write(self, env: EncodedEnvelope) -> SpoolEntry:
        """Durably store ``env``. Blocks on disk I/O (two fsyncs). Raises ``SpoolFull`` or ``OSError``."""
        blob = serialize(env)
        with self._lock:
            if self._bytes + len(blob) > self.max_bytes:
                raise SpoolFull("spool", retry_after_s=1.0)
            self._seq += 1
            seq = self._seq
            self._bytes += len(blob)  # reserve before the slow part
        final = self.directory / f"{seq:016d}-{env.envelope_id}.env"
        tmp = final.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
            _fsync_dir(self.directory)
        except BaseException:
            with self._lock:
                self._bytes -= len(blob)
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)  # renamed but its directory entry not synced: not durable, so not kept
            raise
        entry = SpoolEntry(final, seq, env.envelope_id, len(blob))
        with self._lock:
            self._entries[seq] = entry
        return entry

    def read(self, entry: SpoolEntry) -> EncodedEnvelope:
        """Load one file. Raises ``SpoolCorrupt`` or ``OSError``."""
        return deserialize(entry.path.read_bytes(), str(entry.path))

    def remove(self, entry: SpoolEntry) -> None:
        """Delete a file whose publish Pub/Sub confirmed."""
        entry.path.unlink(missing_ok=True)
        with self._lock:
            if self._entries.pop(entry.seq, None) is not None:
                self._bytes -= entry.size

    def quarantine(self, entry: SpoolEntry, folder: str = "corrupt") -> Path:
        """Move a file that can never be published to ``<folder>/`` for an operator, out of the replay order.

        Raises ``OSError`` (the file then stays in the spool)."""
        dest_dir = self.directory / folder
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / entry.path.name
        os.rename(entry.path, dest)
        with self._lock:
            if self._entries.pop(entry.seq, None) is not None:
                self._bytes -= entry.size
        return dest
