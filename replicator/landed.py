"""``decode_landed``: reading a landed staging object back, as finalization (``replicator.generation``) and the fresh
BigQuery path do.

Landing validated each object under the rules of its day; a rule added later must not make an old object
undecodable, or its partition could never commit (G1, G5). So only a corrupt object is refused here; the events of an
object that merely predates a rule are judged one by one by the reader.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import zstandard

from service import envelope as envelope_format
from service.contract import Envelope

#: The finalizer's logger (this code moved out of ``replicator.finalize``; log filters and alerts name that logger).
log = logging.getLogger("replicator.finalize")

#: ``PoisonEnvelope`` reasons that mean the bytes are not an envelope at all (a corrupt object). Any other reason is a
#: rule about the content, possibly newer than the object (landing validated it under the rules of its day).
_CORRUPT = frozenset({"unknown_format", "unknown_compression", "too_large", "bad_compression", "bad_protobuf"})


def decode_landed(data: bytes, metadata: Mapping[str, str]) -> Envelope:
    """The envelope of a landed staging object.

    ``envelope_format.decode`` refuses envelopes that break its content rules (event times, payload encoding, the
    ``envelope_id`` syntax); landing dead-letters those. An object that landed before a rule existed must not become
    undecodable, or its partition could never commit (G1, G5): it is parsed anyway, and its events are judged one by
    one (``records.check_landed_event``, ``records.event_to_row``). Raises ``PoisonEnvelope`` only for a corrupt object.
    """
    try:
        return envelope_format.decode(data, dict(metadata) or None)
    except envelope_format.PoisonEnvelope as exc:
        if exc.reason in _CORRUPT:
            raise
        env = Envelope()  # decode got past decompression and parsing: the same bytes parse again
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            env.ParseFromString(reader.read(envelope_format.DEFAULT_MAX_UNCOMPRESSED + 1))
        log.warning(
            "staging object of envelope %r predates a landing rule (%s); judging its events", env.envelope_id, exc
        )
        return env
