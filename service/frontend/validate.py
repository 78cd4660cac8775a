"""Per-event validation: the hot path of the front-end.

Contract: ``Validator.check`` looks at each event on its own, never raises for any event content, and returns the
accepted events grouped by (category, UTC event hour) plus one ``Rejection`` per rejected event. It fills in
``event_id`` (a UUIDv7) when empty, and ``event_time`` when unset: the time embedded in a client-given UUIDv7
``event_id`` when that time is inside the accepted window, else the receive time. Every retry of such an event then
gets the same event_time, and so the same hourly partition, whichever front-end receives it (G2); the receive time
differs per attempt. ``Checked.stamp`` carries the ``ingest_time`` and ``client_id`` the packer writes onto every
accepted event (see ``service.frontend.wire``).
Per-event cost is kept to a few microseconds: no pydantic, a compiled regex for ids, msgspec for JSON, and accepted
events are kept as the bytes they arrived as.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import msgspec
from google.protobuf.timestamp_pb2 import Timestamp

from service.catalog import Catalog, PayloadFormat
from service.client.ids import uuid7_str, uuid7_unix_ms
from service.contract import Event, StatusCode
from service.frontend.config import FrontendConfig
from service.frontend.wire import stamp
from service.jsonlimits import MAX_JSON_DEPTH, opening_brackets, too_deep

#: Canonical lowercase hyphenated UUID: the dedup key is the string, so only one spelling of an id is allowed.
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Many ids at once: each canonical UUID followed by a newline (no id can contain one).
_IDS_RE = re.compile(r"(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n)*")
_JSON = msgspec.json.Decoder(msgspec.Raw)
# Field readers for the bulk path: ``map`` with an attrgetter runs the loop in C.
_ID, _CATEGORY, _EVENT_TIME, _PAYLOAD = (attrgetter(f) for f in ("event_id", "category", "event_time", "payload"))
_ATTRIBUTES, _PRODUCER, _SECONDS, _NANOS = (attrgetter(f) for f in ("attributes", "producer", "seconds", "nanos"))


@dataclass(frozen=True, slots=True)
class Limits:
    """The validation limits (see ``FrontendConfig`` for defaults)."""

    max_payload_bytes: int
    max_attributes: int
    max_attributes_bytes: int
    max_producer_chars: int
    event_time_future_s: float
    event_time_past_s: float
    max_event_bytes: int

    @classmethod
    def from_config(cls, c: FrontendConfig) -> Limits:
        return cls(
            c.max_payload_bytes,
            c.max_attributes,
            c.max_attributes_bytes,
            c.max_producer_chars,
            c.event_time_future_s,
            c.event_time_past_s,
            c.max_event_bytes,
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """One rejected event: its position, its id as sent, a StatusCode and a precise message."""

    index: int
    event_id: str
    code: int
    message: str


@dataclass(slots=True)
class Checked:
    """The outcome for one request. ``groups`` maps (category, hour since epoch) to the accepted events, serialized,
    in request order."""

    groups: dict[tuple[str, int], list[bytes]] = field(default_factory=dict)
    #: Each accepted event's event_time as (seconds, nanos), parallel to ``groups``.
    times: dict[tuple[str, int], list[tuple[int, int]]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    accepted: int = 0
    #: The accepted events' serialized bytes, as kept (what the in-flight bound charges).
    accepted_bytes: int = 0
    #: Event ids the front-end assigned, by request index (events sent without one).
    assigned_ids: dict[int, str] = field(default_factory=dict)
    #: Wire bytes setting ingest_time and client_id, appended to each accepted event when packed.
    stamp: bytes = b""


def json_problem(payload: bytes) -> str | None:
    """Why ``payload`` is not one well-formed UTF-8 JSON value within BigQuery's nesting limit, or None when it is."""
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"payload is not UTF-8 (byte {exc.start})"
    try:
        _JSON.decode(payload)
    except msgspec.DecodeError as exc:
        return f"payload is not well-formed JSON: {exc}"
    except RecursionError:  # msgspec's answer to deeply nested input (~1000 levels): an event's problem, not ours
        return "payload JSON is nested too deeply"
    if too_deep(payload):
        return f"payload JSON nests deeper than {MAX_JSON_DEPTH} levels (BigQuery's JSON limit)"
    return None


class Validator:
    """Checks events against the catalog and limits. Stateless apart from configuration; thread-safe."""

    def __init__(self, catalog: Catalog, limits: Limits) -> None:
        self._json = {c.name: c.payload_format is PayloadFormat.JSON for c in catalog.categories}
        self._limits = limits

    def check(
        self, events: Sequence[Event], now_s: float, client_id: str, raw_events: Sequence[bytes] | None = None
    ) -> Checked:
        """Validate ``events`` received at ``now_s`` (Unix seconds) from ``client_id``. May fill event_time/id (see
        the module contract).

        ``raw_events`` are the same events as they arrived on the wire; accepted ones are kept as they are (events
        the front-end changed, and every event when ``raw_events`` is None, are serialized again)."""
        lim = self._limits
        is_json = self._json
        max_payload = lim.max_payload_bytes
        max_event = lim.max_event_bytes
        lo = now_s - lim.event_time_past_s
        hi = now_s + lim.event_time_future_s
        now = Timestamp()
        now.FromNanoseconds(int(now_s * 1e9))
        out = Checked(stamp=stamp(now.seconds, now.nanos, client_id))
        if raw_events is not None and events and self._all_good(events, raw_events, lo, hi, out):
            return out
        groups = out.groups
        times = out.times
        slots: dict[tuple[str, int], tuple[list[bytes], list[tuple[int, int]]]] = {}
        reject = out.rejections.append
        seen: set[str] = set()
        uuid_match = UUID_RE.fullmatch
        json_decode = _JSON.decode
        max_producer = lim.max_producer_chars
        now_secs = now.seconds
        accepted_bytes = 0
        for i, e in enumerate(events):
            eid = e.event_id
            category = e.category
            json_cat = is_json.get(category)
            if json_cat is None:
                reject(Rejection(i, eid, StatusCode.UNKNOWN_CATEGORY, f"category {category!r} is not configured"))
                continue
            if eid:
                if len(eid) != 36 or uuid_match(eid) is None:
                    reject(Rejection(i, eid, StatusCode.INVALID_EVENT_ID, _bad_id(eid)))
                    continue
                if eid in seen:
                    reject(Rejection(i, eid, StatusCode.DUPLICATE_EVENT_ID, f"event_id {eid} repeats in this batch"))
                    continue
            payload = e.payload
            if len(payload) > max_payload:
                msg = f"payload is {len(payload)} bytes > limit {max_payload}"
                reject(Rejection(i, eid, StatusCode.PAYLOAD_TOO_LARGE, msg))
                continue
            ts = e.event_time
            secs = ts.seconds
            nanos = ts.nanos
            changed = False
            if secs == 0 and nanos == 0:  # unset (the epoch itself is outside any window anyway)
                secs, nanos = _id_time(eid, lo, hi) or (now_secs, now.nanos)
                ts.seconds, ts.nanos = secs, nanos
                changed = True
            elif not lo <= secs <= hi or not 0 <= nanos < 1_000_000_000:
                reject(Rejection(i, eid, StatusCode.EVENT_TIME_OUT_OF_WINDOW, _bad_time(ts, now_s, lim)))
                continue
            if e.attributes:
                problem = self._attributes_problem(e)
                if problem is not None:
                    reject(Rejection(i, eid, problem[0], problem[1]))
                    continue
            if len(e.producer) > max_producer:
                msg = f"producer is {len(e.producer)} characters > limit {max_producer}"
                reject(Rejection(i, eid, StatusCode.INVALID_PRODUCER, msg))
                continue
            size = len(raw_events[i]) if raw_events is not None else e.ByteSize()
            if size > max_event:
                msg = f"event is {size} bytes serialized > limit {max_event} (unknown fields?)"
                reject(Rejection(i, eid, StatusCode.PAYLOAD_TOO_LARGE, msg))
                continue
            if json_cat:
                try:
                    if not payload.isascii():  # ASCII is valid UTF-8; only decode (a copy) when it matters
                        payload.decode("utf-8")
                    json_decode(payload)
                    if too_deep(payload):
                        raise RecursionError
                except (UnicodeDecodeError, msgspec.DecodeError, RecursionError):
                    reject(Rejection(i, eid, StatusCode.INVALID_JSON, json_problem(payload) or "invalid JSON"))
                    continue
            if eid:
                seen.add(eid)
            else:
                eid = e.event_id = uuid7_str()
                out.assigned_ids[i] = eid
                changed = True
            key = (category, secs // 3600)
            slot = slots.get(key)
            if slot is None:
                slots[key] = slot = (groups.setdefault(key, []), times.setdefault(key, []))
            kept = e.SerializeToString() if changed or raw_events is None else raw_events[i]
            slot[0].append(kept)
            slot[1].append((secs, nanos))
            accepted_bytes += len(kept)
        out.accepted_bytes = accepted_bytes
        out.accepted = len(events) - len(out.rejections)
        return out

    def _all_good(self, events: Sequence[Event], raw: Sequence[bytes], lo: float, hi: float, out: Checked) -> bool:
        """The bulk fast path: True (and ``out`` filled) when every event passes every check and needs no change.

        Each check runs over the whole request in C (list comprehensions, ``map``, one regex over all ids); any doubt
        returns False and ``check`` runs the per-event loop, which finds each event's precise reason (G5). It accepts
        exactly what that loop accepts without changes: ids set, canonical and unique; known categories; event_time
        set and in the window; no attributes; sizes (payload, producer, whole event) within limits; JSON well-formed,
        at most 500 deep."""
        lim = self._limits
        events = list(events)  # one Python wrapper per event, shared by every pass below (upb makes them lazily)
        ids = list(map(_ID, events))
        if len(set(ids)) != len(ids) or _IDS_RE.fullmatch("\n".join(ids) + "\n") is None:
            return False
        categories = set(map(_CATEGORY, events))
        is_json = self._json
        if not categories.issubset(is_json.keys()):
            return False
        stamps = list(map(_EVENT_TIME, events))
        secs = list(map(_SECONDS, stamps))
        nanos = list(map(_NANOS, stamps))
        if not (lo <= min(secs) and max(secs) <= hi and min(nanos) >= 0 and max(nanos) < 1_000_000_000):
            return False
        if any(map(_ATTRIBUTES, events)) or max(map(len, map(_PRODUCER, events))) > lim.max_producer_chars:
            return False
        payloads = list(map(_PAYLOAD, events))
        sizes = list(map(len, payloads))
        if max(sizes) > lim.max_payload_bytes:
            return False
        raw_sizes = list(map(len, raw))
        if max(raw_sizes) > lim.max_event_bytes:
            return False
        json_payloads = payloads if all(is_json[c] for c in categories) else None
        if json_payloads is None and any(is_json[c] for c in categories):
            json_payloads = [p for e, p in zip(events, payloads, strict=True) if is_json[e.category]]
        if json_payloads:
            try:
                if not all(map(bytes.isascii, json_payloads)):  # ASCII is valid UTF-8; decode only when it matters
                    for p in json_payloads:
                        p.decode("utf-8")
                for _ in map(_JSON.decode, json_payloads):  # each payload on its own: one value, nothing after it
                    pass
                if max(map(opening_brackets, json_payloads)) > MAX_JSON_DEPTH:  # maybe too deep: the loop decides
                    return False
            except (UnicodeDecodeError, msgspec.DecodeError, RecursionError):
                return False
        pairs = list(zip(secs, nanos, strict=True))  # built in C; the packer takes min/max of these tuples
        hours = [s // 3600 for s in secs]
        if len(categories) == 1 and min(hours) == max(hours):
            key = (next(iter(categories)), hours[0])
            out.groups[key] = list(raw)
            out.times[key] = pairs
        else:
            for e, r, h, m in zip(events, raw, hours, pairs, strict=True):
                key = (e.category, h)
                out.groups.setdefault(key, []).append(r)
                out.times.setdefault(key, []).append(m)
        out.accepted = len(events)
        out.accepted_bytes = sum(raw_sizes)
        return True

    def _attributes_problem(self, e: Event) -> tuple[int, str] | None:
        lim = self._limits
        n = len(e.attributes)
        if n > lim.max_attributes:
            return StatusCode.TOO_MANY_ATTRIBUTES, f"{n} attributes > limit {lim.max_attributes}"
        size = sum(len(k.encode()) + len(v.encode()) for k, v in e.attributes.items())
        if size > lim.max_attributes_bytes:
            return StatusCode.ATTRIBUTES_TOO_LARGE, f"attributes total {size} bytes > limit {lim.max_attributes_bytes}"
        return None


def _id_time(eid: str, lo: float, hi: float) -> tuple[int, int] | None:
    """The (seconds, nanos) embedded in ``eid`` when it is a UUIDv7 whose time passes the same window check as a
    client-given event_time (``lo <= seconds <= hi``); None otherwise, and for an empty id (the front-end's own)."""
    ms = uuid7_unix_ms(eid) if eid else None
    if ms is None:
        return None
    secs, rem = divmod(ms, 1000)
    return (secs, rem * 1_000_000) if lo <= secs <= hi else None


def _bad_id(eid: str) -> str:
    shown = eid if len(eid) <= 64 else eid[:64] + "..."
    return f"event_id {shown!r} is not a canonical lowercase UUID (8-4-4-4-12 hex digits)"


def _bad_time(ts: Timestamp, now_s: float, lim: Limits) -> str:
    if not 0 <= ts.nanos < 1_000_000_000:
        return f"event_time has invalid nanos {ts.nanos}"
    delta = ts.seconds - now_s
    if delta > 0:
        return f"event_time is {delta:.0f}s in the future (limit {lim.event_time_future_s:.0f}s)"
    return f"event_time is {-delta:.0f}s in the past (limit {lim.event_time_past_s:.0f}s)"
