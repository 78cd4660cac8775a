"""``check_envelope``: the landing hot path's envelope check, with exactly the verdicts of ``service.envelope.decode``.

Why a second path: ``service.envelope.decode`` decompresses through a stream reader that allocates a buffer of its
whole limit (256 MiB) per call, parses every event into protobuf objects and checks each one with two Python
attribute reads in a loop. Landing needs only the envelope's id, category and event count (the staging object is
the message body verbatim), so this path decompresses once into the frame's stated size and checks the decompressed
wire bytes with a C scan (``replicator._envscan``) without building the events: ~1 ms per 1 MiB, 1000-event
envelope (0.9 ms of it zstd), against 2.3-3.5 ms for the reference and ~1.9-2.2 ms for the pure-Python fallback
(docs/replicator-perf.md).

Contract (identical to ``service.envelope.decode`` for every input, so poison detection does not change):
  * The fast path only ACCEPTS: one zstd frame that states its content size (the front-end's ``zstd`` compressor
    always writes it) within the limit, no trailing bytes, a body that upb parses, and every check of the reference
    passing (envelope id, categories, event ids, time ranges, and UTF-8 payloads when the category is one of
    ``json_categories``). The C scan accepts only bodies it fully understands (see ``_envscan.c``); without the
    extension (no compiler at install) the body is parsed and checked in Python (the reference's own check
    functions) instead, with the same verdicts.
  * Anything else (a missing content size, an error of any kind, a failed check, a body the scan does not handle)
    is handed to the reference ``service.envelope.decode``, which returns the Envelope or raises ``PoisonEnvelope``
    with its own reason and detail. So a rejection always comes from the reference, and the fast path never rejects
    on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import zstandard
from google.protobuf.message import DecodeError

from service import envelope as envelope_format
from service.contract import Envelope

_Scan = Callable[[bytes, bool], tuple[str, str, int] | None]


def _load_scan() -> _Scan | None:
    try:
        from replicator._envscan import scan
    except ImportError:  # built without a compiler: the pure-Python check in ``_fast``
        return None
    return scan


#: The C wire scan, or None when the extension is missing (tests assert it is built).
SCAN: _Scan | None = _load_scan()


@dataclass(frozen=True, slots=True)
class Checked:
    """A valid envelope (the reference would return it): its facts, and the Envelope on demand.

    ``body`` is the decompressed Envelope when the fast path accepted it; ``parsed`` the Envelope when it was
    parsed anyway (the Python fallback or the reference)."""

    envelope_id: str
    category: str
    event_count: int
    body: bytes | None = None
    parsed: Envelope | None = None

    def envelope(self) -> Envelope:
        """The parsed Envelope (parses ``body`` on each call when only the scan ran; it parses, the scan said so)."""
        if self.parsed is not None:
            return self.parsed
        return Envelope.FromString(self.body or b"")


def _of(env: Envelope) -> Checked:
    return Checked(env.envelope_id, env.category, len(env.events), parsed=env)


def check_envelope(
    data: bytes,
    attributes: Mapping[str, str],
    *,
    max_uncompressed: int = envelope_format.DEFAULT_MAX_UNCOMPRESSED,
    json_categories: Collection[str] = frozenset(),
) -> Checked:
    """Decompress and validate one message body. Raises ``PoisonEnvelope`` exactly when the reference does (with
    the same ``json_categories``)."""
    checked = _fast(data, attributes, max_uncompressed, json_categories)
    if checked is None:
        env = envelope_format.decode(
            data, dict(attributes), max_uncompressed=max_uncompressed, json_categories=json_categories
        )
        return _of(env)
    return checked


def decode_envelope(
    data: bytes,
    attributes: Mapping[str, str],
    *,
    max_uncompressed: int = envelope_format.DEFAULT_MAX_UNCOMPRESSED,
    json_categories: Collection[str] = frozenset(),
) -> Envelope:
    """``check_envelope``'s Envelope: the one ``service.envelope.decode`` returns, or its ``PoisonEnvelope``."""
    return check_envelope(
        data, attributes, max_uncompressed=max_uncompressed, json_categories=json_categories
    ).envelope()


def decompressed_bound(data: bytes, max_uncompressed: int) -> int:
    """The most bytes checking ``data`` can decompress: the frame's stated content size when it states one within
    the limit (the fast path allocates exactly that, and libzstd refuses a frame that does not decode to it); 0 when
    it states more (the reference refuses it from the header); else ``max_uncompressed`` (the reference streams up to
    its limit). Never raises; cheap (reads the frame header)."""
    try:
        size = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        return max_uncompressed  # the reference will say bad_compression, after reading at most the limit
    if size > max_uncompressed:
        return 0
    return size if size >= 0 else max_uncompressed


def _fast(
    data: bytes, attrs: Mapping[str, str], max_uncompressed: int, json_categories: Collection[str]
) -> Checked | None:
    """The checked envelope when every check passes; None when the reference must decide."""
    if attrs.get("logpipe_format") != envelope_format.FORMAT:
        return None
    if attrs.get("logpipe_compression") != envelope_format.COMPRESSION:
        return None
    try:
        if int(attrs.get("uncompressed_bytes", "-1")) > max_uncompressed:
            return None
        size = zstandard.frame_content_size(data)
        if size < 0 or size > max_uncompressed:  # -1: size not stated; the reference streams with its limit
            return None
        # One allocation of the stated size; libzstd fails if the frame does not decode to exactly that size.
        # A decompressor is not thread-safe, so one per call (a few microseconds). Releases the GIL.
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=size, allow_extra_data=False)
    except (zstandard.ZstdError, ValueError):
        return None
    # Which payloads must be UTF-8 depends on the body's category, known only after the scan: check them unless the
    # category attribute names a category that is not json (a body of another category fails the attribute check).
    claimed = attrs.get("category")
    json_payloads = bool(json_categories) and (claimed is None or claimed in json_categories)
    if SCAN is not None:
        facts = SCAN(raw, json_payloads)  # releases the GIL; None for anything it does not accept
        checked = None if facts is None else Checked(*facts, body=raw)
    else:
        checked = _parse_and_check(raw, json_categories)
    if checked is None:
        return None
    if attrs.get("envelope_id") not in (None, checked.envelope_id):
        return None
    if attrs.get("category") not in (None, checked.category):
        return None
    if not json_payloads and checked.category in json_categories:  # never, given the checks above: the rule itself
        return None
    return checked


def _parse_and_check(raw: bytes, json_categories: Collection[str]) -> Checked | None:
    """The pure-Python body check (the fallback without the C scan): parse, then the reference's own checks."""
    env = Envelope()
    try:
        env.ParseFromString(raw)
    except DecodeError:
        return None
    try:
        envelope_format.check_envelope_id(env.envelope_id)
        envelope_format.check_events(env, json_payloads=env.category in json_categories)
    except envelope_format.PoisonEnvelope:
        return None
    return _of(env)
