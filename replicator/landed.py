"""``decode_landed``: reading a landed staging object back, as finalization (``replicator.generation``) and the fresh
BigQuery path do.

Landing validated each object under the rules of its day; a rule added later must not make an old object
undecodable, or its partition could never commit (G1, G5). So only a corrupt object is refused here; the events of an
object that merely predates a rule are judged one by one by the reader.
"""

from __future__ import annotations

from collections.abc import Mapping

from service import envelope as envelope_format
from service.contract import Envelope


def decode_landed(data: bytes, metadata: Mapping[str, str]) -> Envelope:
    """The envelope of a landed staging object: decompressed and parsed, with no content rule checked.

    ``envelope_format.decode`` refuses envelopes that break its content rules (event times, payload encoding, the
    ``envelope_id`` syntax); landing dead-letters those. An object that landed before a rule existed must not become
    undecodable, or its partition could never commit (G1, G5). Every reader judges the events one by one
    (``records.check_landed_event`` and ``records.event_to_row``), which is what happened to an object that failed
    an envelope-wide check before this function stopped running them; for any other object the checks passed and
    changed nothing. So the outcome is the same without them, and they cost about 15 % of a merge's GIL. Raises
    ``PoisonEnvelope`` only for a corrupt object (``envelope_format.parse``).
    """
    return envelope_format.parse(data, metadata)
