"""Landing: one Pub/Sub message -> one staging object per (envelope, UTC hour). The hot path.

Contract of ``Lander.land`` (steps L1-L3 of docs/design.md):
  * Raises ``PoisonEnvelope`` for a message that is not a valid envelope of a category this worker serves: the caller
    dead-letters and acks it. Nothing was written.
  * Raises ``StoreError`` when an object could not be created (permanent error, or transient past the deadline):
    the caller must NOT ack. Some hours may have landed; a redelivery finishes the rest.
  * Returns normally only when every staging object of the envelope exists: the caller may ack.
  * Idempotent: landing the same envelope again (any worker, any time) creates nothing new.
  * Raises ``BudgetExhausted`` (a transient ``StoreError``: the caller nacks) when the process-wide decompression
    budget stayed busy past its timeout. Nothing was written.

Bounds (G4, G5): an envelope may decompress to at most ``max_uncompressed`` bytes (``MAX_UNCOMPRESSED``; more is
poison), and every lander of the process shares one ``ByteBudget``: before decompressing, ``land`` holds twice the
most the body can decompress to (the body, and the Envelope parsed from it when the slow path or the reference
parses it) until the staging bodies are built; uploads run outside it. What is valid (envelope id, event times, UTF-8
payloads of json categories) is ``service.envelope``'s rule; anything else is dead-lettered here, before it is acked,
instead of failing its partition at finalization.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from replicator import budget as budgets
from replicator.crash import NEVER, CrashPoints
from replicator.decode import check_envelope, decompressed_bound
from replicator.layout import Layout, Partition
from replicator.metrics import Metrics
from replicator.store import ObjectStore
from service import envelope as envelope_format
from service.catalog import Category, PayloadFormat
from service.contract import Envelope

CONTENT_TYPE = "application/vnd.logpipe.envelope+zstd"
#: The most one envelope may decompress to. A front-end's largest is ``envelope_target_bytes`` (at most 8 MiB) plus
#: one event (``max_payload_bytes``, at most 8 MiB, plus attributes and ids): about 16 MiB. 4x that leaves room for
#: larger attribute limits; anything above is poison (service.envelope's ``too_large``).
MAX_UNCOMPRESSED: Final = 64 * 1024 * 1024
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MIN_TIME = _EPOCH + dt.timedelta(seconds=envelope_format.MIN_TIME_SECONDS)
_END_TIME = _EPOCH + dt.timedelta(seconds=envelope_format.END_TIME_SECONDS)
_Part = tuple[dt.datetime, bytes, dict[str, str], int]


@dataclass(frozen=True, slots=True)
class Landed:
    """What ``land`` did: the staging names, and how many of them this call created (the rest already existed)."""

    envelope_id: str
    category: str
    names: tuple[str, ...]
    created: int
    events: int
    bytes: int


def _claimed_hour(attributes: Mapping[str, str]) -> dt.datetime | None:
    """The hour of the ``min_event_time``/``max_event_time`` attributes when both parse, lie in the valid time range
    (service.envelope) and share one hour."""
    try:
        lo = dt.datetime.fromisoformat(attributes["min_event_time"].replace("Z", "+00:00"))
        hi = dt.datetime.fromisoformat(attributes["max_event_time"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    if lo.tzinfo is None or hi.tzinfo is None:
        return None
    if not _MIN_TIME <= lo <= hi < _END_TIME:  # a claim outside the valid times: find the hours in the events
        return None
    lo_h, hi_h = (t.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) for t in (lo, hi))
    return lo_h if lo_h == hi_h else None


def _hour_of(seconds: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(seconds=seconds - seconds % 3600)


class Lander:
    """Lands envelopes of ``categories`` into ``store`` under ``layout``. Thread-safe; no I/O in the constructor.

    ``categories`` are the catalog's ``Category`` objects (their payload format decides whether payloads must be
    UTF-8) or bare names (tools and tests: payloads are then not checked, as for a bytes category). ``budget`` is
    shared by every lander of the process unless one is given (``budget.process_budget()``)."""

    def __init__(
        self,
        store: ObjectStore,
        categories: Iterable[Category | str],
        metrics: Metrics,
        layout: Layout | None = None,
        crash: CrashPoints = NEVER,
        *,
        max_uncompressed: int = MAX_UNCOMPRESSED,
        budget: budgets.ByteBudget | None = None,
    ) -> None:
        cats = list(categories)
        self._store = store
        self._categories = frozenset(c if isinstance(c, str) else c.name for c in cats)
        self._json = frozenset(
            c.name for c in cats if not isinstance(c, str) and c.payload_format is PayloadFormat.JSON
        )
        self._metrics = metrics
        self._layout = layout or Layout()
        self._crash = crash
        self._max_uncompressed = max_uncompressed
        self._budget = budget if budget is not None else budgets.process_budget()

    def land(self, data: bytes, attributes: Mapping[str, str]) -> Landed:
        """Validate and land one message. See the module docstring for what it raises."""
        # Decompression and parsing happen under the process-wide budget; the uploads do not.
        with self._budget.hold(2 * decompressed_bound(data, self._max_uncompressed)):
            envelope_id, category, events, parts = self._check_and_split(data, attributes)
        created = 0
        names = []
        for hour, body, meta, count in parts:
            name = self._layout.staging_object(Partition(category, hour), envelope_id)
            self._crash.point("land.before_upload")
            res = self._store.create_if_absent(name, body, meta, CONTENT_TYPE)
            names.append(name)
            if res.created:
                created += 1
                self._metrics.objects_written.labels("staging").inc()
                self._metrics.events_landed.labels(category).inc(count)
                self._metrics.bytes_landed.labels(category).inc(len(body))
            else:
                self._metrics.objects_existing.labels("staging").inc()
        self._crash.point("land.after_upload")
        return Landed(envelope_id, category, tuple(names), created, events, len(data))

    def _check_and_split(self, data: bytes, attributes: Mapping[str, str]) -> tuple[str, str, int, list[_Part]]:
        """Validate the message; its id, category, event count and staging bodies (one per hour). The decompressed
        body and the parsed Envelope are dropped on return (the caller's budget covers them until then)."""
        checked = check_envelope(  # same verdicts as service.envelope.decode, cheaper (decode.py)
            data, attributes, max_uncompressed=self._max_uncompressed, json_categories=self._json
        )
        envelope_id, category = checked.envelope_id, checked.category
        if category not in self._categories:
            raise envelope_format.PoisonEnvelope("unknown_category", f"category {category!r} is not served here")
        claimed = _claimed_hour(attributes)
        if claimed is not None and checked.event_count:
            # Fast path: the producer (service.envelope.encode) states min/max event time in one hour. Not
            # re-checked per event here (that costs ~20% of the hot path); the finalizer counts any misplaced event.
            # The events are not parsed at all: the staging object is the message body verbatim.
            return envelope_id, category, checked.event_count, [(claimed, data, dict(attributes), checked.event_count)]
        env = checked.envelope()
        hours: dict[int, list[int]] = {}
        for i, e in enumerate(env.events):
            hours.setdefault(e.event_time.seconds // 3600, []).append(i)
        if len(hours) == 1:
            parts = [(_hour_of(next(iter(hours)) * 3600), data, dict(attributes), len(env.events))]
        else:  # several hours (or none: an empty envelope lands nothing)
            parts = [self._split(env, h, idx) for h, idx in sorted(hours.items())]
        return envelope_id, category, checked.event_count, parts

    @staticmethod
    def _split(env: Envelope, hour_index: int, indices: list[int]) -> _Part:
        """Re-encode the events of one hour as an envelope with the same ``envelope_id``."""
        part = Envelope(envelope_id=env.envelope_id, category=env.category, frontend=env.frontend)
        if env.HasField("created"):
            part.created.CopyFrom(env.created)
        part.events.extend(env.events[i] for i in indices)
        enc = envelope_format.encode(part)
        return _hour_of(hour_index * 3600), enc.data, dict(enc.attributes), len(indices)
