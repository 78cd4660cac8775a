"""A deterministic, seeded workload of realistic events for the demo, the chaos suite, the soak and the benchmarks.

Contract: the same ``seed`` and arguments give the same events (ids included), so a failing chaos run can be
replayed. Payloads match each category's declared ``fields`` so BigQuery's extracted columns are populated.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from service.catalog import Catalog, Category, PayloadFormat

_LEVELS = ("debug", "info", "info", "info", "warn", "error")
_SERVICES = ("checkout", "search", "auth", "feed", "ads-server")


@dataclass(frozen=True)
class PlannedEvent:
    """One event to send. ``expect`` is ``"accept"`` or the StatusCode name it must be rejected with."""

    category: str
    payload: bytes
    event_time: dt.datetime
    event_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    expect: str = "accept"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def payload_for(cat: Category, rng: random.Random, pad: int = 0) -> bytes:
    """A realistic payload for ``cat``; ``pad`` adds that many filler characters (to size events)."""
    if cat.payload_format is PayloadFormat.BYTES:
        return rng.randbytes(64 + pad)
    doc: dict[str, object] = {}
    for f in cat.fields:
        t = f.type.value
        if t == "STRING":
            doc[f.name] = f"{f.name}-{rng.randrange(1000)}"
        elif t == "INT64":
            doc[f.name] = rng.randrange(1, 5_000_000)
        elif t == "FLOAT64":
            doc[f.name] = round(rng.random() * 100, 3)
        elif t == "BOOL":
            doc[f.name] = rng.random() < 0.9
        else:
            doc[f.name] = "2026-11-26T13:00:00Z"
    if cat.name == "app_log":
        doc["level"], doc["service"] = rng.choice(_LEVELS), rng.choice(_SERVICES)
        doc["message"] = f"request handled in {rng.randrange(1, 900)} ms"
    doc["session"] = f"s-{rng.randrange(10**6)}"
    if pad:
        doc["pad"] = "x" * pad
    return json.dumps(doc, separators=(",", ":")).encode()


def events(
    catalog: Catalog,
    count: int,
    *,
    seed: int,
    now: dt.datetime,
    categories: tuple[str, ...] | None = None,
    pad: int = 0,
    spread: dt.timedelta = dt.timedelta(minutes=5),
) -> Iterator[PlannedEvent]:
    """``count`` valid events spread over categories, with event times in ``[now - spread, now]``."""
    rng = random.Random(seed)
    cats = [catalog.category(c) for c in categories] if categories else list(catalog.categories)
    for i in range(count):
        cat = cats[i % len(cats)]
        t = now - dt.timedelta(seconds=rng.random() * spread.total_seconds())
        attrs = {"region": rng.choice(("us-east", "eu-west", "ap-south")), "seq": str(i)}
        yield PlannedEvent(cat.name, payload_for(cat, rng, pad), t, _uuid(rng), attrs)


def late_events(catalog: Catalog, count: int, *, seed: int, hour: dt.datetime) -> list[PlannedEvent]:
    """Valid events whose event time falls inside ``hour`` (an hour already closed: they become a delta commit)."""
    rng = random.Random(seed ^ 0x1A7E)
    out = []
    for i in range(count):
        cat = catalog.categories[i % len(catalog.categories)]
        t = hour + dt.timedelta(seconds=rng.randrange(3600))
        out.append(PlannedEvent(cat.name, payload_for(cat, rng), t, _uuid(rng), {"late": "true"}))
    return out


def invalid_events(catalog: Catalog, *, seed: int, now: dt.datetime) -> list[PlannedEvent]:
    """One event per rejection reason the front-end must answer (G5), each with the code it expects."""
    rng = random.Random(seed ^ 0xBAD)
    json_cat = next(c for c in catalog.categories if c.payload_format is PayloadFormat.JSON)
    ok = payload_for(json_cat, rng)
    return [
        PlannedEvent(json_cat.name, b'{"unterminated": ', now, _uuid(rng), expect="INVALID_JSON"),
        PlannedEvent("no_such_category", ok, now, _uuid(rng), expect="UNKNOWN_CATEGORY"),
        PlannedEvent(json_cat.name, ok, now - dt.timedelta(days=30), _uuid(rng), expect="EVENT_TIME_OUT_OF_WINDOW"),
        PlannedEvent(json_cat.name, ok, now + dt.timedelta(days=2), _uuid(rng), expect="EVENT_TIME_OUT_OF_WINDOW"),
        PlannedEvent(
            json_cat.name,
            json.dumps({"blob": "x" * (2 * 1024 * 1024)}).encode(),
            now,
            _uuid(rng),
            expect="PAYLOAD_TOO_LARGE",
        ),
    ]
