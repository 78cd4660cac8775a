"""Dead letters of a tier: read them with their reasons, and replay them into the tier's topic (``logpipe
dead-letters``).

A tier's dead-letter topic receives messages two ways (docs/design.md, "Errors on the hot path"):
  * **forwarded** by Pub/Sub's dead-letter policy after ``max_delivery_attempts`` failed deliveries (for example a GCS
    outage longer than the attempts cover). Pub/Sub keeps the original data and attributes and adds
    ``CloudPubSubDeadLetter*`` attributes. Their reason here is ``FORWARDED`` (``max_delivery_attempts``); nothing was
    wrong with the message, so replaying it lands it.
  * **published by the replicator** for a poison envelope (``handler.dead_letter_attributes``): ``reason``,
    ``detail``, ``original_message_id`` and the original attributes prefixed ``original_``. Replaying one only helps
    once its cause is fixed (a catalog that lacked its category, a limit raised); otherwise it comes back.

Replay contract (``replay``): for each selected dead letter, publish its original data and attributes to the tier's
topic, wait for Pub/Sub to confirm, and only then ack the dead letter. A crash between the two publishes the same
envelope again on the next replay: landing is idempotent by ``envelope_id`` (G2), so at worst it costs one more
delivery. Nothing is acked that was not republished (G1). A dead letter whose original attributes cannot be restored
(``dropped_attributes`` > 0) is never replayed: it is reported and left in place.

Reading (``peek``) acks nothing: every message pulled is held (its deadline extended) until the call ends and then
released with a zero deadline, so one call sees each dead letter once and leaves them all in the subscription.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from replicator.handler import DROPPED_KEY

#: The reason given to messages Pub/Sub forwarded after ``max_delivery_attempts``.
FORWARDED = "max_delivery_attempts"
_PUBSUB_PREFIX = "CloudPubSubDeadLetter"
_ORIGINAL = "original_"
_OWN_KEYS = frozenset({"reason", "detail", "original_message_id", DROPPED_KEY})
_HOLD = 60  # seconds: the deadline pulled messages are held at while one call runs
_PULL_BATCH = 100


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter as an operator reads it. ``attributes`` are the original message's, as a replay sends them
    (None when some were dropped at dead-lettering and cannot be restored)."""

    message_id: str
    published: dt.datetime
    reason: str
    detail: str
    category: str
    envelope_id: str
    data_bytes: int
    attempts: str
    original_message_id: str
    attributes: Mapping[str, str] | None

    def summary(self) -> dict[str, Any]:
        """JSON-ready view (``logpipe dead-letters list --json``)."""
        return {
            "message_id": self.message_id,
            "published": self.published.isoformat(),
            "reason": self.reason,
            "detail": self.detail,
            "category": self.category,
            "envelope_id": self.envelope_id,
            "bytes": self.data_bytes,
            "attempts": self.attempts,
            "original_message_id": self.original_message_id,
            "replayable": self.attributes is not None,
        }


def original_attributes(attributes: Mapping[str, str]) -> Mapping[str, str] | None:
    """The attributes the message had before it was dead-lettered; None if they cannot all be restored."""
    attrs = dict(attributes)
    if "reason" in attrs and "original_message_id" in attrs:  # published by the replicator
        if int(attrs.get(DROPPED_KEY, "0") or 0) > 0:
            return None
        return {k[len(_ORIGINAL) :]: v for k, v in attrs.items() if k.startswith(_ORIGINAL) and k not in _OWN_KEYS}
    return {k: v for k, v in attrs.items() if not k.startswith(_PUBSUB_PREFIX)}


def describe(message: Any) -> DeadLetter:
    """A ``DeadLetter`` from a pulled ``PubsubMessage``."""
    attrs = dict(message.attributes)
    original = original_attributes(attrs)
    forwarded = not ("reason" in attrs and "original_message_id" in attrs)
    published = message.publish_time
    if not isinstance(published, dt.datetime):  # a protobuf Timestamp (raw pull) rather than proto-plus' datetime
        published = published.ToDatetime(tzinfo=dt.UTC)
    known = original or {}
    return DeadLetter(
        message_id=str(message.message_id),
        published=published,
        reason=FORWARDED if forwarded else attrs["reason"],
        detail=(
            f"{attrs.get(_PUBSUB_PREFIX + 'SourceDeliveryCount', '?')} failed deliveries from subscription "
            f"{attrs.get(_PUBSUB_PREFIX + 'SourceSubscription', '?')}"
            if forwarded
            else attrs.get("detail", "")
        ),
        category=known.get("category", attrs.get("original_category", "")),
        envelope_id=known.get("envelope_id", attrs.get("original_envelope_id", "")),
        data_bytes=len(message.data),
        attempts=attrs.get(_PUBSUB_PREFIX + "SourceDeliveryCount", ""),
        original_message_id=attrs.get("original_message_id", ""),
        attributes=original,
    )


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What one ``replay`` call did: the dead letters republished (and acked), and those it left in place."""

    replayed: tuple[DeadLetter, ...]
    skipped: tuple[DeadLetter, ...]
    unrestorable: tuple[DeadLetter, ...]


class DeadLetterQueue:
    """The dead-letter subscription of one tier, through injected Pub/Sub clients (real or emulator-backed).

    Not thread-safe. Each method blocks until done and raises the client's errors (``google.api_core.exceptions``).
    """

    def __init__(
        self,
        subscriber: Any,
        subscription_path: str,
        *,
        publisher: Any = None,
        topic_path: str = "",
        pull_timeout: float = 3.0,
        publish_timeout: float = 60.0,
    ) -> None:
        self._sub, self._path = subscriber, subscription_path
        self._pub, self._topic = publisher, topic_path
        self._pull_timeout, self._publish_timeout = pull_timeout, publish_timeout

    def peek(self, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, in the order Pub/Sub delivers them; acks nothing."""
        with self._holding() as held:
            return [describe(received.message) for received in self._pull_new(limit, held)]

    def replay(self, limit: int, reasons: Collection[str]) -> ReplayResult:
        """Look at up to ``limit`` dead letters; republish those whose reason is in ``reasons`` (every reason when
        empty) to the tier's topic, then ack them. See the module contract. The others stay in the subscription."""
        if self._pub is None or not self._topic:
            raise ValueError("replay needs a publisher and the tier's topic path")
        replayed: list[DeadLetter] = []
        skipped: list[DeadLetter] = []
        unrestorable: list[DeadLetter] = []
        with self._holding() as held:
            for received in self._pull_new(limit, held):
                letter = describe(received.message)
                if reasons and letter.reason not in reasons:
                    skipped.append(letter)
                elif letter.attributes is None:
                    unrestorable.append(letter)
                else:
                    self._pub.publish(self._topic, received.message.data, **letter.attributes).result(
                        timeout=self._publish_timeout
                    )
                    self._sub.acknowledge(subscription=self._path, ack_ids=[received.ack_id])  # only once confirmed
                    held.pop(received.ack_id, None)
                    replayed.append(letter)
        return ReplayResult(tuple(replayed), tuple(skipped), tuple(unrestorable))

    # --- internals ---------------------------------------------------------------------------------------------
    def _pull_new(self, limit: int, held: dict[str, str]) -> Iterator[Any]:
        """Yield up to ``limit`` distinct dead letters, until a pull brings nothing new. Every message pulled is
        recorded in ``held`` (ack id -> message id) and its deadline extended, so it is not redelivered meanwhile."""
        from google.api_core import exceptions as gexc

        seen: set[str] = set()
        while len(seen) < limit:
            try:
                resp = self._sub.pull(subscription=self._path, max_messages=_PULL_BATCH, timeout=self._pull_timeout)
            except gexc.DeadlineExceeded:
                return
            for r in resp.received_messages:
                held[r.ack_id] = r.message.message_id
            fresh = [r for r in resp.received_messages if r.message.message_id not in seen]
            if not fresh:
                return
            self._sub.modify_ack_deadline(subscription=self._path, ack_ids=list(held), ack_deadline_seconds=_HOLD)
            for r in fresh:
                if len(seen) >= limit:
                    return
                seen.add(r.message.message_id)
                yield r

    @contextlib.contextmanager
    def _holding(self) -> Iterator[dict[str, str]]:
        """The ack ids one call holds; whatever it did not ack is released (deadline 0) when it ends, even on error."""
        held: dict[str, str] = {}
        try:
            yield held
        finally:
            if held:
                self._sub.modify_ack_deadline(subscription=self._path, ack_ids=list(held), ack_deadline_seconds=0)
