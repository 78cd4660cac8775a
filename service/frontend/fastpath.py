"""The request-level fast path: one C pass (``service.frontend._scan``) over a serialized ``PublishRequest``.

Contract:
  * ``WireScanner.scan(raw, now_s, client_id)`` returns a ``Scanned`` only when ``Validator`` would accept every event
    of the request unchanged through its bulk path (``Validator._all_good``: ids set, canonical lowercase UUIDs,
    unique; known categories; event_time set and in the window; no attributes; producer and payload within limits;
    JSON payloads UTF-8 and exactly one RFC 8259 value). Otherwise it returns None, and the caller parses the request
    and runs ``Validator.check``, the reference, which gives every rejected event its own code and message (G5).
    None also covers any wire the scanner does not understand (unknown fields, a client-set ``ingest_time`` or
    ``client_id``, fields repeated, non-minimal varints), more than ``max_events`` events, and a missing C module.
  * It never raises for any bytes and never changes them. The scan runs with the GIL released for big requests.
  * A ``Scanned`` carries what the packer needs and nothing per event as Python objects: per (category, UTC hour) one
    ``FramedGroup`` whose ``data`` is exactly ``b"".join(frame(events, stamp)[1])`` (see ``service.frontend.wire``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

from service.catalog import Catalog, PayloadFormat
from service.frontend.validate import Limits
from service.frontend.wire import FramedGroup, stamp

_scan: ModuleType | None
try:
    from service.frontend import _scan
except ImportError:  # built without a compiler: the Python path decides every request
    _scan = None

NANOS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Scanned:
    """A request the fast path accepted whole: every event, in ``groups`` by (category, hour), first seen first."""

    sequence: int
    omit_accepted_statuses: bool
    accepted: int
    accepted_bytes: int
    groups: list[FramedGroup]

    @property
    def categories(self) -> set[str]:
        return {g.category for g in self.groups}


class WireScanner:
    """See the module contract. Stateless apart from configuration; thread-safe."""

    def __init__(self, catalog: Catalog, limits: Limits, max_events: int) -> None:
        self._categories = tuple((c.name, c.payload_format is PayloadFormat.JSON) for c in catalog.categories)
        self._limits = limits
        self._max_events = max_events

    @staticmethod
    def available() -> bool:
        """True when the C module is built (``make install``)."""
        return _scan is not None

    def scan(self, raw: bytes, now_s: float, client_id: str) -> Scanned | None:
        """The bulk verdict on ``raw`` received at ``now_s`` (Unix seconds) from ``client_id``; None = undecided."""
        if _scan is None:
            return None
        lim = self._limits
        ingest = stamp(*divmod(int(now_s * 1e9), NANOS), client_id)
        lo = math.ceil(now_s - lim.event_time_past_s)  # secs are ints: lo <= secs <= hi exactly as Python compares
        hi = math.floor(now_s + lim.event_time_future_s)
        out = _scan.scan(
            raw, self._categories, ingest, lo, hi, lim.max_payload_bytes, lim.max_producer_chars, self._max_events
        )
        if out is None:
            return None
        sequence, omit, count, event_bytes, groups = out
        return Scanned(
            sequence,
            omit,
            count,
            event_bytes,
            [
                FramedGroup(cat, hour, n, data, memoryview(ends).cast("q"), memoryview(times).cast("q"), tmin, tmax)
                for cat, hour, n, data, ends, times, tmin, tmax in groups
            ],
        )
