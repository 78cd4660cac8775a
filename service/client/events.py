"""Building ``Event`` messages from what callers pass to ``send``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from service.client.errors import InvalidEvent
from service.client.ids import uuid7_str
from service.contract import Event


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
) -> Event:
    """An ``Event`` with a UUIDv7 id unless one is given. ``event_time``: aware datetime or Unix seconds; None
    leaves it unset (the front-end uses its receive time)."""
    e = Event(event_id=event_id or uuid7_str(), category=category, payload=payload_bytes(payload), producer=producer)
    if event_time is not None:
        e.event_time.CopyFrom(to_timestamp(event_time))
    if attributes:
        e.attributes.update(attributes)
    return e


def to_timestamp(value: dt.datetime | float) -> Timestamp:
    ts = Timestamp()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidEvent("event_time must be timezone-aware")
        ts.FromDatetime(value.astimezone(dt.UTC))
    else:
        ts.FromNanoseconds(int(float(value) * 1e9))
    return ts
