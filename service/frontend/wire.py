"""Hand-made protobuf wire bytes for the packing hot path (see ``Packer``).

Why: copying each accepted ``Event`` into an ``Envelope`` and stamping it field by field costs several microseconds
per event in Python. Instead each event's bytes, as they arrived (``PublishRequestEventsView``), are framed as
``Envelope.events`` (field 3), followed by a per-request *stamp*: the encoded ``ingest_time`` (field 7) and
``client_id`` (field 8). A parser merges fields that occur twice in one message in order, so the stamp overrides
whatever the client put in those fields; ``ingest_time`` is written with both ``seconds`` and ``nanos`` present (even
when zero) so that nothing of a client-set value survives.
The result parses to exactly the Envelope that setting the fields would give (tested in test_frontend_wire.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate

_ENVELOPE_EVENTS_TAG = b"\x1a"  # Envelope.events = 3, length-delimited
_INGEST_TIME_TAG = b"\x3a"  # Event.ingest_time = 7, length-delimited
_CLIENT_ID_TAG = b"\x42"  # Event.client_id = 8, length-delimited


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_SMALL = [varint(n) for n in range(1 << 14)]
_HEADS = [_ENVELOPE_EVENTS_TAG + v for v in _SMALL]


def _len(n: int) -> bytes:
    return _SMALL[n] if n < 16384 else varint(n)


def stamp(ingest_seconds: int, ingest_nanos: int, client_id: str) -> bytes:
    """The bytes appended to every accepted event of one request."""
    ts = b"\x08" + varint(ingest_seconds) + b"\x10" + varint(ingest_nanos)
    cid = client_id.encode()
    return _INGEST_TIME_TAG + _len(len(ts)) + ts + _CLIENT_ID_TAG + _len(len(cid)) + cid


def _field(tag: bytes, value: bytes) -> bytes:
    return tag + _len(len(value)) + value if value else b""


def envelope_header(envelope_id: str, category: str, frontend: str, created_s: int, created_nanos: int) -> bytes:
    """Wire bytes of an Envelope's own fields (envelope_id, category, frontend, created); followed by ``frame``'s
    parts they make a whole Envelope (a parser accepts fields in any order)."""
    created = (b"\x08" + varint(created_s) if created_s else b"") + (
        b"\x10" + varint(created_nanos) if created_nanos else b""
    )
    return (
        _field(b"\x0a", envelope_id.encode())
        + _field(b"\x12", category.encode())
        + _field(b"\x22", frontend.encode())
        + b"\x2a"
        + _len(len(created))
        + created
    )


def frame(serialized: Iterable[bytes], suffix: bytes) -> tuple[list[int], list[bytes]]:
    """Each serialized event as an ``Envelope.events`` entry carrying ``suffix``.

    Returns (sizes, parts): event i is ``parts[3*i : 3*i + 3]`` (field header, the event's bytes, suffix) and takes
    ``sizes[i]`` bytes; ``b"".join(parts)`` is an Envelope's event list. Nothing is copied until that join."""
    extra = len(suffix)
    heads = _HEADS
    sizes: list[int] = []
    parts: list[bytes] = []
    for s in serialized:
        n = len(s) + extra
        head = heads[n] if n < 16384 else _ENVELOPE_EVENTS_TAG + varint(n)
        parts += (head, s, suffix)
        sizes.append(len(head) + n)
    return sizes, parts


@dataclass(frozen=True, slots=True)
class FramedGroup:
    """Accepted events of one (category, UTC hour), framed and stamped as ``frame`` does, back to back in ``data``.

    The packer's unit: it splits a group between envelopes only at ``ends``. Made by ``framed_group`` (the Python
    path) or by the C scanner (``service.frontend.fastpath``), with the same bytes."""

    category: str
    hour: int
    count: int
    data: bytes
    #: End offset of each event in ``data``.
    ends: Sequence[int]
    #: Each event's event_time in nanoseconds since the epoch.
    times: Sequence[int]
    min_time: int
    max_time: int


def framed_group(
    category: str, hour: int, serialized: Sequence[bytes], suffix: bytes, times: Sequence[tuple[int, int]]
) -> FramedGroup:
    """``serialized`` events with their event_time as (seconds, nanos), framed with ``suffix`` into one group."""
    sizes, parts = frame(serialized, suffix)
    nanos = [s * 1_000_000_000 + n for s, n in times]
    return FramedGroup(
        category, hour, len(sizes), b"".join(parts), list(accumulate(sizes)), nanos, min(nanos), max(nanos)
    )
