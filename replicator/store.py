"""``ObjectStore``: the three operations the protocol needs from GCS, and an in-memory fake with the same contract.

Contract (checked by tests/unit/test_replicator_store_contract.py against both this fake and fake-gcs-server):
  * ``create_if_absent(name, data, metadata)`` creates the object iff no object of that name exists, atomically, and
    returns ``Created(created=True, ...)``; if it exists, nothing changes and it returns ``created=False`` with the
    EXISTING object's crc32c and size (so callers can check it holds what they meant to write).
  * ``read(name)`` returns the bytes; raises ``ObjectNotFound``.
  * ``stat(name)`` returns ``ObjectInfo`` or None.
  * ``list(prefix, start_offset="")`` yields ``ObjectInfo`` of every object whose name starts with ``prefix`` and is
    >= ``start_offset`` (byte-wise, as GCS's ``startOffset``; "" bounds nothing), in name order.
  * ``delete(name)`` removes the object if present (used only for orphan clean-up; never on the commit path).
  * Transient failures are retried inside the adapter (replicator/retry.py); what escapes is ``StoreError``.
"""

from __future__ import annotations

import base64
import builtins
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import google_crc32c

from replicator.errors import ObjectNotFound


def crc32c_b64(data: bytes) -> str:
    """CRC32C of ``data`` in GCS's representation: base64 of the 4 big-endian bytes."""
    return base64.b64encode(int(google_crc32c.value(data)).to_bytes(4, "big")).decode("ascii")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a listing tells about one object."""

    name: str
    size: int
    crc32c: str
    updated: dt.datetime
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Created:
    """Result of ``create_if_absent``. ``crc32c``/``size`` describe the object now stored under the name."""

    created: bool
    crc32c: str
    size: int


class ObjectStore(Protocol):
    """See the module docstring for the contract."""

    def create_if_absent(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
    ) -> Created: ...

    def read(self, name: str) -> bytes: ...

    def stat(self, name: str) -> ObjectInfo | None: ...

    def list(self, prefix: str, *, start_offset: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, name: str) -> None: ...

    def open_connections(self, n: int) -> int:
        """Open up to ``n`` connections for creates ahead of the first messages; how many were opened. Never raises
        (a store without connections, or a failure, opens 0 and connects on demand)."""
        ...


class MemoryStore:
    """Thread-safe in-memory ``ObjectStore`` for unit tests. ``fail`` lets a test make the next calls raise."""

    def __init__(self, clock: Callable[[], dt.datetime] | None = None) -> None:
        self._objects: dict[str, tuple[bytes, dict[str, str], dt.datetime]] = {}
        self._lock = threading.Lock()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.writes = 0

    def create_if_absent(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
    ) -> Created:
        with self._lock:
            if name in self._objects:
                old = self._objects[name][0]
                return Created(False, crc32c_b64(old), len(old))
            self._objects[name] = (bytes(data), dict(metadata or {}), self._clock())
            self.writes += 1
            return Created(True, crc32c_b64(data), len(data))

    def read(self, name: str) -> bytes:
        with self._lock:
            if name not in self._objects:
                raise ObjectNotFound(name)
            return self._objects[name][0]

    def stat(self, name: str) -> ObjectInfo | None:
        with self._lock:
            if name not in self._objects:
                return None
            data, meta, updated = self._objects[name]
            return ObjectInfo(name, len(data), crc32c_b64(data), updated, dict(meta))

    def list(self, prefix: str, *, start_offset: str = "") -> Iterator[ObjectInfo]:
        with self._lock:
            items = sorted((n, v) for n, v in self._objects.items() if n.startswith(prefix) and n >= start_offset)
        for n, (data, meta, updated) in items:
            yield ObjectInfo(n, len(data), crc32c_b64(data), updated, dict(meta))

    def delete(self, name: str) -> None:
        with self._lock:
            self._objects.pop(name, None)

    def open_connections(self, n: int) -> int:
        return 0

    def names(self) -> builtins.list[str]:
        with self._lock:
            return sorted(self._objects)
