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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Final

import zstandard
from google.protobuf.message import DecodeError

from service.contract import Envelope

FORMAT: Final = "logpipe.v1.Envelope"
COMPRESSION: Final = "zstd"
#: Pub/Sub caps a message at 10 MB; leave room for attributes.
MAX_MESSAGE_BYTES: Final = 9_500_000
#: Upper bound on a decompressed envelope; larger bodies are poison.
DEFAULT_MAX_UNCOMPRESSED: Final = 256 * 1024 * 1024


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
    data: bytes, attributes: dict[str, str] | None = None, *, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED
) -> Envelope:
    """Decompress and parse a Pub/Sub message body. Raises ``PoisonEnvelope`` on anything invalid."""
    attrs = dict(attributes or {})
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
    if not env.envelope_id:
        raise PoisonEnvelope("missing_envelope_id", "envelope has no envelope_id")
    if attrs.get("envelope_id") not in (None, env.envelope_id):
        raise PoisonEnvelope("attribute_mismatch", "envelope_id attribute differs from the body")
    if attrs.get("category") not in (None, env.category):
        raise PoisonEnvelope("attribute_mismatch", "category attribute differs from the body")
    for i, e in enumerate(env.events):
        if e.category != env.category:
            raise PoisonEnvelope("mixed_categories", f"event {i} has category {e.category!r} != {env.category!r}")
        if not e.event_id:
            raise PoisonEnvelope("missing_event_id", f"event {i} has no event_id")
    return env
