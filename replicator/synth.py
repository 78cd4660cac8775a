"""Synthetic envelopes for tests and ``logpipe bench replicate``: deterministic for a given seed."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid

from service import envelope as envelope_format
from service.contract import Envelope, Event


def make_event(category: str, event_id: str, when: dt.datetime, payload_bytes: int = 0, seq: int = 0) -> Event:
    """One JSON-payload event of about ``payload_bytes`` (at least a small JSON object)."""
    body: dict[str, object] = {"seq": seq, "user_id": f"u{seq % 1000}", "campaign_id": f"c{seq % 17}"}
    if payload_bytes > 64:
        body["pad"] = "x" * (payload_bytes - 64)
    e = Event(event_id=event_id, category=category, payload=json.dumps(body).encode(), producer="synth")
    e.event_time.FromDatetime(when.astimezone(dt.UTC).replace(tzinfo=None))
    e.ingest_time.FromDatetime(when.astimezone(dt.UTC).replace(tzinfo=None))
    return e


def make_envelope(
    category: str,
    event_ids: list[str],
    when: dt.datetime | list[dt.datetime],
    envelope_id: str | None = None,
    payload_bytes: int = 0,
) -> envelope_format.EncodedEnvelope:
    """An encoded envelope holding one event per id; ``when`` is one time for all or one per event."""
    times = when if isinstance(when, list) else [when] * len(event_ids)
    env = Envelope(envelope_id=envelope_id or str(uuid.uuid4()), category=category, frontend="synth")
    env.events.extend(
        make_event(category, i, t, payload_bytes, n) for n, (i, t) in enumerate(zip(event_ids, times, strict=True))
    )
    return envelope_format.encode(env)


def random_payload_envelope(
    rng: random.Random, category: str, events: int, when: dt.datetime, payload_bytes: int
) -> envelope_format.EncodedEnvelope:
    """An envelope of ``events`` events whose payloads are ~``payload_bytes`` of poorly compressible JSON."""
    env = Envelope(envelope_id=str(uuid.UUID(int=rng.getrandbits(128))), category=category, frontend="synth")
    for n in range(events):
        pad = rng.randbytes(payload_bytes // 2).hex()
        e = Event(
            event_id=str(uuid.UUID(int=rng.getrandbits(128))),
            category=category,
            payload=json.dumps({"seq": n, "pad": pad}).encode(),
            producer="synth",
        )
        e.event_time.FromDatetime(when.astimezone(dt.UTC).replace(tzinfo=None))
        env.events.append(e)
    return envelope_format.encode(env, level=1)
