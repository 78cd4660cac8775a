"""Building ``Event`` messages from what callers pass to ``send``.

Every event leaves the SDK with an ``event_id`` and an ``event_time``, both fixed once, before the first attempt, so
every retry (to any front-end) resends the identical event. A front-end fills a missing event_time with its receive
time, which differs per attempt: a retry across an hour boundary would then land the same id in two hourly partitions,
where per-partition deduplication cannot see it (design note G2).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from service.client.errors import InvalidEvent
from service.client.ids import uuid7
from service.contract import Event

#: The largest payload ``send`` accepts by default: the front-end's ``max_payload_bytes`` default (1 MiB). A larger
#: event would be rejected there (PAYLOAD_TOO_LARGE) at best, or make its whole request too large for gRPC.
MAX_PAYLOAD_BYTES = 1024 * 1024


def payload_bytes(payload: Any) -> bytes:
    """bytes stay as they are; str is encoded as UTF-8 (for JSON categories it must be JSON text); anything else is
    serialized as compact JSON. Raises ``InvalidEvent`` when it cannot be serialized."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8")
    try:
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"payload is not bytes, str or JSON-serializable: {exc}") from None


def make_event(
    category: str,
    payload: Any,
    *,
    event_time: dt.datetime | float | None = None,
    attributes: Mapping[str, str] | None = None,
    event_id: str | None = None,
    producer: str = "",
    now_ns: int | None = None,
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
) -> Event:
    """An ``Event`` with a UUIDv7 id unless one is given. ``event_time``: aware datetime or Unix seconds; None stamps
    the current time (``now_ns``, Unix nanoseconds, overrides the clock in tests). Raises ``InvalidEvent`` (with the
    reason) for a payload larger than ``max_payload_bytes``, a bad ``event_time``, or a category, id, producer or
    attribute that is not a string."""
    for name, value in (("category", category), ("producer", producer)):
        if not isinstance(value, str):
            raise InvalidEvent(f"{name} must be a str, not {type(value).__name__}")
    if event_id is not None and not isinstance(event_id, str):
        raise InvalidEvent(f"event_id must be a str, not {type(event_id).__name__}")
    now = time.time_ns() if now_ns is None else now_ns
    eid = event_id or str(uuid7(now))
    e = Event(event_id=eid, category=category, payload=payload_bytes(payload), producer=producer)
    check_payload_size(e, max_payload_bytes)
    if event_time is None:
        e.event_time.FromNanoseconds(now)
    else:
        e.event_time.CopyFrom(to_timestamp(event_time))
    if attributes:
        for k, v in attributes.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise InvalidEvent(f"attributes must map str to str; got {k!r}: {type(v).__name__}")
        e.attributes.update(attributes)
    return e


def check_payload_size(event: Event, max_payload_bytes: int) -> None:
    """Raises ``InvalidEvent`` when the payload is larger than ``max_payload_bytes``."""
    if len(event.payload) > max_payload_bytes:
        raise InvalidEvent(f"payload is {len(event.payload)} bytes, more than max_payload_bytes={max_payload_bytes}")


def fill_defaults(event: Event, now_ns: int | None = None) -> Event:
    """Give a ready-made ``event`` what ``make_event`` would: a UUIDv7 ``event_id`` when empty, and the current time
    (or ``now_ns``) as ``event_time`` when unset (seconds and nanos both zero, as the front-end reads it). Changes
    ``event`` in place and returns it; a no-op for an event that has both, so calling it again changes nothing."""
    ts = event.event_time
    if event.event_id and (ts.seconds or ts.nanos):
        return event
    now = time.time_ns() if now_ns is None else now_ns
    if not event.event_id:
        event.event_id = str(uuid7(now))
    if not (ts.seconds or ts.nanos):
        ts.FromNanoseconds(now)
    return event


def to_timestamp(value: dt.datetime | float) -> Timestamp:
    """An aware datetime or Unix seconds (int or float) -> Timestamp. Raises ``InvalidEvent`` for anything else."""
    ts = Timestamp()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidEvent("event_time must be timezone-aware")
        try:
            ts.FromDatetime(value.astimezone(dt.UTC))
        except (ValueError, OverflowError) as exc:
            raise InvalidEvent(f"event_time {value!r} is out of range: {exc}") from None
        return ts
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(
            f"event_time must be an aware datetime or Unix seconds, not {type(value).__name__} {value!r}"
        )
    try:
        ts.FromNanoseconds(int(float(value) * 1e9))
    except (ValueError, OverflowError) as exc:
        raise InvalidEvent(f"event_time {value!r} is not a valid time: {exc}") from None
    return ts
