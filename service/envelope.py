"""The envelope wire format: how a batch of one category's events travels as one Pub/Sub message.

Format (public, versioned by the ``logpipe_format`` attribute):
  * message data = zstd( serialized ``logpipe.v1.Envelope`` protobuf )
  * attributes:
      ``logpipe_format``       ``logpipe.v1.Envelope``
      ``logpipe_compression``  ``zstd``
      ``envelope_id``          unique id, identical across publish retries and spool replays
      ``category``             the category of every event inside
      ``event_count``          number of events (decimal)
      ``min_event_time`` / ``max_event_time``  RFC 3339 UTC with microseconds
      ``uncompressed_bytes``   size of the serialized protobuf (decimal)

Contract: ``encode`` never fails for a well-formed Envelope. ``decode`` either returns an Envelope whose attributes
and body agree, or raises ``PoisonEnvelope`` with a precise reason (the replicator dead-letters those). ``decode``
refuses bodies that decompress past ``max_uncompressed`` bytes, so a hostile message cannot exhaust memory.

What a valid envelope is (anyone who can publish to a topic can send one, so every fact the replicator relies on
later is checked here, at landing, where a bad message can still be dead-lettered instead of failing its partition):
  * ``envelope_id``: 1-128 characters of ``[A-Za-z0-9._-]`` (``ENVELOPE_ID_RE``). It is part of a staging object's
    name; the front-end's UUIDv7s fit, and so do the ids of the synth and bench helpers (``bench-1-0000001``).
  * every event: of the envelope's category, with an ``event_id``; ``event_time`` and ``ingest_time`` (unset reads
    as the epoch) with seconds in [1000-01-01T00:00:00Z, 9999-01-01T00:00:00Z) and nanos in [0, 1e9). That is
    protobuf's Timestamp range (years 1-9999) narrowed to what the finalizer can handle: a partition path needs a
    4-digit year (``strftime("%Y")`` writes year 999 as ``999``), and an hour's end plus the lateness must still be a
    ``datetime``; Avro ``timestamp-micros`` and BigQuery TIMESTAMP hold the whole range.
  * in a category whose ``payload_format`` is json (``json_categories``): every payload is UTF-8 (records.py writes
    it as text). JSON well-formedness is the front-end's check, not a landing one: the raw payload is kept either way.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Final

import zstandard
from google.protobuf.message import DecodeError

from service.contract import Envelope, Event

FORMAT: Final = "logpipe.v1.Envelope"
COMPRESSION: Final = "zstd"
#: Pub/Sub caps a message at 10 MB; leave room for attributes.
MAX_MESSAGE_BYTES: Final = 9_500_000
#: Upper bound on a decompressed envelope; larger bodies are poison.
DEFAULT_MAX_UNCOMPRESSED: Final = 256 * 1024 * 1024
#: What an ``envelope_id`` may be (it is part of an object name): UUIDs, ``bench-1-0000001``; no ``/``, no newline.
ENVELOPE_ID_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
#: Accepted ``event_time``/``ingest_time`` seconds: [1000-01-01T00:00:00Z, 9999-01-01T00:00:00Z) (see above).
MIN_TIME_SECONDS: Final = -30_610_224_000
END_TIME_SECONDS: Final = 253_370_764_800
_TIME_RANGE: Final = "[1000-01-01T00:00:00Z, 9999-01-01T00:00:00Z) with nanos in [0, 1e9)"


class PoisonEnvelope(ValueError):
    """A Pub/Sub message that is not a valid envelope. ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class EncodedEnvelope:
    """What to publish: the message body and its attributes."""

    envelope_id: str
    category: str
    data: bytes
    attributes: dict[str, str]
    event_count: int


def rfc3339(ts: dt.datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with microseconds, e.g. ``2026-11-26T13:00:00.000000Z``."""
    return ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event_time_bounds(env: Envelope) -> tuple[int, int]:
    micros = [e.event_time.seconds * 1_000_000 + e.event_time.nanos // 1000 for e in env.events]
    return (min(micros), max(micros)) if micros else (0, 0)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def encode(env: Envelope, *, level: int = 3) -> EncodedEnvelope:
    """Serialize and compress ``env``. ``env.envelope_id`` and ``env.category`` must be set."""
    if not env.envelope_id or not env.category:
        raise ValueError("envelope_id and category are required")
    lo, hi = _event_time_bounds(env)
    return encode_serialized(
        env.SerializeToString(),
        envelope_id=env.envelope_id,
        category=env.category,
        event_count=len(env.events),
        min_event_micros=lo,
        max_event_micros=hi,
        level=level,
    )


def encode_serialized(
    raw: bytes,
    *,
    envelope_id: str,
    category: str,
    event_count: int,
    min_event_micros: int,
    max_event_micros: int,
    level: int = 3,
) -> EncodedEnvelope:
    """Like ``encode`` for an Envelope that is already serialized (``raw``), with its facts given by the caller.

    The front-end's hot path uses it: it builds the Envelope's wire bytes itself and knows each event's time from
    validation, so nothing is parsed or walked again. The caller guarantees that ``raw`` parses to an Envelope with
    this ``envelope_id`` and ``category``, ``event_count`` events, and event times (as Unix microseconds, truncated)
    spanning exactly [``min_event_micros``, ``max_event_micros``]; the result is then identical to ``encode``'s."""
    if not envelope_id or not category:
        raise ValueError("envelope_id and category are required")
    data = zstandard.ZstdCompressor(level=level).compress(raw)
    attrs = {
        "logpipe_format": FORMAT,
        "logpipe_compression": COMPRESSION,
        "envelope_id": envelope_id,
        "category": category,
        "event_count": str(event_count),
        "min_event_time": rfc3339(_EPOCH + dt.timedelta(microseconds=min_event_micros)),
        "max_event_time": rfc3339(_EPOCH + dt.timedelta(microseconds=max_event_micros)),
        "uncompressed_bytes": str(len(raw)),
    }
    return EncodedEnvelope(envelope_id, category, data, attrs, event_count)


def decode(
    data: bytes,
    attributes: dict[str, str] | None = None,
    *,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
    json_categories: Collection[str] = frozenset(),
) -> Envelope:
    """Decompress and parse a Pub/Sub message body. Raises ``PoisonEnvelope`` on anything invalid (module docstring);
    payloads must be UTF-8 when the envelope's category is one of ``json_categories``."""
    attrs = dict(attributes or {})
    env = parse(data, attrs, max_uncompressed=max_uncompressed)
    check_envelope_id(env.envelope_id)
    if attrs.get("envelope_id") not in (None, env.envelope_id):
        raise PoisonEnvelope("attribute_mismatch", "envelope_id attribute differs from the body")
    if attrs.get("category") not in (None, env.category):
        raise PoisonEnvelope("attribute_mismatch", "category attribute differs from the body")
    check_events(env, json_payloads=env.category in json_categories)
    return env


def parse(data: bytes, attrs: Mapping[str, str], *, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED) -> Envelope:
    """The first half of ``decode``: check the format attributes and the size, decompress, parse. No content rule
    (envelope id, attributes against the body, events) is checked. Raises ``PoisonEnvelope`` only when the bytes
    are not an envelope at all: ``unknown_format``, ``unknown_compression``, ``too_large``, ``bad_compression`` or
    ``bad_protobuf``."""
    fmt = attrs.get("logpipe_format")
    if fmt != FORMAT:
        raise PoisonEnvelope("unknown_format", f"logpipe_format attribute is {fmt!r}, expected {FORMAT!r}")
    comp = attrs.get("logpipe_compression")
    if comp != COMPRESSION:
        raise PoisonEnvelope("unknown_compression", f"logpipe_compression is {comp!r}, expected {COMPRESSION!r}")
    try:
        declared = int(attrs.get("uncompressed_bytes", "-1"))
    except ValueError:
        declared = -1
    if declared > max_uncompressed:
        raise PoisonEnvelope("too_large", f"declares {declared} uncompressed bytes > limit {max_uncompressed}")
    try:
        stated = zstandard.frame_content_size(data)  # -1 when the frame does not state it
    except zstandard.ZstdError:
        stated = -1  # not a zstd frame: the stream reader below says why
    if stated > max_uncompressed:  # refused before allocating anything
        raise PoisonEnvelope("too_large", f"zstd frame states {stated} uncompressed bytes > limit {max_uncompressed}")
    try:
        dctx = zstandard.ZstdDecompressor()
        with dctx.stream_reader(data) as reader:
            raw = reader.read(max_uncompressed + 1)
    except zstandard.ZstdError as exc:
        raise PoisonEnvelope("bad_compression", f"zstd: {exc}") from None
    if len(raw) > max_uncompressed:
        raise PoisonEnvelope("too_large", f"decompresses past {max_uncompressed} bytes")
    env = Envelope()
    try:
        env.ParseFromString(raw)
    except DecodeError as exc:
        raise PoisonEnvelope("bad_protobuf", str(exc)) from None
    return env


def check_envelope_id(envelope_id: str) -> None:
    """Raises ``PoisonEnvelope`` unless ``envelope_id`` is 1-128 characters of ``[A-Za-z0-9._-]``."""
    if not envelope_id:
        raise PoisonEnvelope("missing_envelope_id", "envelope has no envelope_id")
    if ENVELOPE_ID_RE.fullmatch(envelope_id) is None:
        raise PoisonEnvelope(
            "bad_envelope_id",
            f"envelope_id {envelope_id[:64]!r} ({len(envelope_id)} characters) is not 1-128 of [A-Za-z0-9._-]",
        )


_category = attrgetter("category")
_event_id = attrgetter("event_id")
_payload = attrgetter("payload")
_event_time = attrgetter("event_time")
_ingest_time = attrgetter("ingest_time")
_seconds = attrgetter("seconds")
_nanos = attrgetter("nanos")


def check_events(env: Envelope, *, json_payloads: bool) -> None:
    """Raises ``PoisonEnvelope`` for the first event (in order) that breaks a rule of the module docstring.

    The checks of ``decode`` on the events; the pure-Python landing check (``replicator.decode``) runs them too.
    When every event passes, map() over C attribute getters: ~1.5-2 us per event (two Timestamp sub-messages each);
    the per-event loop that names the first failing event runs only when something failed."""
    events = env.events
    n = len(events)
    if (
        list(map(_category, events)).count(env.category) == n
        and all(map(_event_id, events))
        and _times_ok(events)
        and (not json_payloads or _all_utf8(list(map(_payload, events))))
    ):
        return
    for i, e in enumerate(events):
        if e.category != env.category:
            raise PoisonEnvelope("mixed_categories", f"event {i} has category {e.category!r} != {env.category!r}")
        if not e.event_id:
            raise PoisonEnvelope("missing_event_id", f"event {i} has no event_id")
        for name, ts in (("event_time", e.event_time), ("ingest_time", e.ingest_time)):
            if not (MIN_TIME_SECONDS <= ts.seconds < END_TIME_SECONDS and 0 <= ts.nanos < 1_000_000_000):
                raise PoisonEnvelope(
                    f"{name}_out_of_range",
                    f"event {i} ({e.event_id[:64]!r}) has {name} seconds={ts.seconds} nanos={ts.nanos}, "
                    f"outside {_TIME_RANGE}",
                )
        if json_payloads:
            try:
                e.payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PoisonEnvelope(
                    "payload_not_utf8",
                    f"event {i} ({e.event_id[:64]!r}) of json category {env.category!r}: payload is not UTF-8 "
                    f"(byte {exc.start})",
                ) from None


def _times_ok(events: Sequence[Event]) -> bool:
    # Each sub-message access costs ~0.25 us (upb makes a wrapper): take each Timestamp once, then its two scalars.
    for stamps in (list(map(_event_time, events)), list(map(_ingest_time, events))):
        if not stamps:
            return True
        secs: list[int] = list(map(_seconds, stamps))
        nanos: list[int] = list(map(_nanos, stamps))
        if not (min(secs) >= MIN_TIME_SECONDS and max(secs) < END_TIME_SECONDS):
            return False
        if not (min(nanos) >= 0 and max(nanos) < 1_000_000_000):
            return False
    return True


def _all_utf8(payloads: list[bytes]) -> bool:
    for p in payloads:
        if not p.isascii():  # ASCII is UTF-8; decode (a copy) only when it matters
            try:
                p.decode("utf-8")
            except UnicodeDecodeError:
                return False
    return True
