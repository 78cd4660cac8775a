"""``MessageHandler``: the streaming-pull callback. The one place that acks (habit: ack last, after every effect).

Per message (steps L1-L4 of docs/design.md):
  * landed                         -> ack (``ack_with_response`` when exactly-once delivery is on; its confirmation
                                      is counted in a callback, the landing thread does not wait for it)
  * poison (``PoisonEnvelope``)    -> publish to the dead-letter topic with ``reason``/``detail``/``original_*``
                                      attributes (kept within Pub/Sub's limits: ``dead_letter_attributes``), wait
                                      for it, then ack; if that publish fails -> nack
  * ``StoreError`` or anything else -> count, log, nack (never ack as if landed; never raise into the subscriber);
                                      a permanent error first waits ``nack_delay`` (no hot redelivery loop)
It also tracks, for the watermark and the oldest-unacked-age gauge, the messages it holds (from the moment the
scheduler queues them, ``queued``, to the end of their callback, or ``dropped``) and the oldest publish time
among the messages it started in the last ``receive_window`` seconds (kept per second: at most ``receive_window``
entries, whatever the rate). The second one holds the watermark back while a backlog drains (the messages it has
not started yet are older than the ones it has) and across a nack and its redelivery.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from replicator.crash import NEVER, CrashPoints
from replicator.errors import StoreError
from replicator.landing import Lander
from replicator.metrics import Metrics
from service.envelope import PoisonEnvelope

log = logging.getLogger(__name__)

# Pub/Sub's limits on a published message (https://cloud.google.com/pubsub/quotas#resource_limits).
MAX_ATTRIBUTES = 100
MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 1024
MAX_PUBLISH_BYTES = 10_000_000  # one PublishRequest: data, attributes, topic name and protobuf framing
_ATTR_OVERHEAD = 10  # protobuf framing of one map entry, at most
_REQUEST_SLACK = 2048  # topic name and the request's own framing
#: Set on a dead-lettered message when some original attributes did not fit: how many were left out.
DROPPED_KEY = "dropped_attributes"


class DeadLetterSink(Protocol):
    """Publishes a poison message to the dead-letter topic. Blocks until the publish is confirmed; raises if not."""

    def publish(self, data: bytes, attributes: Mapping[str, str]) -> None: ...


class PubsubDeadLetter:
    """``DeadLetterSink`` on a Pub/Sub topic through an injected ``PublisherClient``."""

    def __init__(self, publisher: Any, topic_path: str, timeout: float) -> None:
        self._publisher = publisher
        self._topic = topic_path
        self._timeout = timeout

    def publish(self, data: bytes, attributes: Mapping[str, str]) -> None:
        self._publisher.publish(self._topic, data, **attributes).result(timeout=self._timeout)


def dead_letter_attributes(message: Any, reason: str, detail: str) -> dict[str, str]:
    """``reason``, ``detail``, ``original_message_id`` and the original attributes prefixed ``original_``.

    Always within Pub/Sub's limits, or the dead-letter publish would fail on every redelivery: keys are cut to
    ``MAX_KEY_BYTES`` and values to ``MAX_VALUE_BYTES`` (UTF-8, on a character boundary); the original attributes are
    taken in sorted key order while the count stays within ``MAX_ATTRIBUTES`` and the message within
    ``MAX_PUBLISH_BYTES``. Those left out (too many, too big, or a cut key equal to one already taken) are counted in
    ``dropped_attributes``, present only when not zero.
    """
    attrs = {
        "reason": _cut(reason, MAX_VALUE_BYTES),
        "detail": _cut(detail, MAX_VALUE_BYTES),
        "original_message_id": _cut(str(message.message_id), MAX_VALUE_BYTES),
    }
    original = sorted((str(k), str(v)) for k, v in dict(message.attributes).items())
    budget = MAX_PUBLISH_BYTES - _REQUEST_SLACK - len(message.data) - _size(attrs) - _size({DROPPED_KEY: "0" * 9})
    dropped = 0
    for k, v in original:
        key, value = _cut(f"original_{k}", MAX_KEY_BYTES), _cut(v, MAX_VALUE_BYTES)
        cost = _size({key: value})
        if len(attrs) >= MAX_ATTRIBUTES or cost > budget or key in attrs:
            dropped += 1
            continue
        attrs[key] = value
        budget -= cost
    if dropped:
        if len(attrs) >= MAX_ATTRIBUTES:  # make room for the count: leave out the last one taken
            attrs.popitem()
            dropped += 1
        attrs[DROPPED_KEY] = str(dropped)
    return attrs


def _cut(s: str, limit: int) -> str:
    """``s`` cut to at most ``limit`` bytes of UTF-8, on a character boundary (unencodable characters become ?)."""
    return s.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")


def _size(attrs: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) + _ATTR_OVERHEAD for k, v in attrs.items())


class MessageHandler:
    """Callable for ``SubscriberClient.subscribe``. Thread-safe; never raises."""

    def __init__(
        self,
        lander: Lander,
        dead_letter: DeadLetterSink,
        metrics: Metrics,
        *,
        exactly_once: bool = False,
        crash: CrashPoints = NEVER,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        nack_delay: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        receive_window: float = 0.0,
    ) -> None:
        self._lander = lander
        self._dead_letter = dead_letter
        self._metrics = metrics
        self._exactly_once = exactly_once
        self._crash = crash
        self._clock = clock
        self._nack_delay = nack_delay
        self._sleep = sleep
        self._held: dict[int, dt.datetime] = {}
        self._receive_window = receive_window
        self._recent: deque[tuple[int, dt.datetime]] = deque()  # (clock second, oldest publish time started in it)
        self._started_any = False
        self._oldest_dropped: dt.datetime | None = None
        self._lock = threading.Lock()

    def oldest_held(self) -> dt.datetime | None:
        """Publish time of the oldest message currently held (landing, not yet acked), or None."""
        with self._lock:
            return min(self._held.values(), default=None)

    def oldest_recent(self) -> dt.datetime | None:
        """Oldest publish time among the messages started in the last ``receive_window`` seconds (whatever became
        of them: acked, nacked, dead-lettered), or None."""
        with self._lock:
            self._forget_before(int(self._clock().timestamp()))
            return min((t for _, t in self._recent), default=None)

    def _note_started(self, published: dt.datetime) -> None:
        """Record a started message (caller holds the lock)."""
        if self._receive_window <= 0:
            return
        second = int(self._clock().timestamp())
        if self._recent and self._recent[-1][0] == second:
            published = min(published, self._recent[-1][1])
            self._recent.pop()
        self._recent.append((second, published))
        self._forget_before(second)

    def _forget_before(self, second: int) -> None:
        while self._recent and self._recent[0][0] <= second - self._receive_window:
            self._recent.popleft()

    def in_flight(self) -> int:
        """Messages held: queued in the scheduler or running."""
        with self._lock:
            return len(self._held)

    @property
    def started_any(self) -> bool:
        """Whether any message's callback has started."""
        return self._started_any

    def queued(self, message: Any) -> None:
        """The scheduler queued ``message``: hold it from now on (``replicator.scheduler``)."""
        with self._lock:
            self._held[id(message)] = message.publish_time or self._clock()

    def dropped(self, message: Any) -> None:
        """The scheduler dropped ``message`` unstarted (at shutdown; the client nacks it): no longer held, but its
        publish time is kept for ``oldest_dropped``."""
        with self._lock:
            published = self._held.pop(id(message), None) or message.publish_time or self._clock()
            if self._oldest_dropped is None or published < self._oldest_dropped:
                self._oldest_dropped = published

    def oldest_dropped(self) -> dt.datetime | None:
        """Oldest publish time among the messages the scheduler dropped unstarted, or None. A stopping worker's last
        heartbeat holds it, so the other workers wait for the nacked messages' redelivery (worker.py, ``stop``)."""
        with self._lock:
            return self._oldest_dropped

    def __call__(self, message: Any) -> None:
        key = id(message)
        with self._lock:
            published = self._held[key] = message.publish_time or self._clock()
            self._note_started(published)
            self._started_any = True
        try:
            self._handle(message)
        except Exception:  # a bug must not kill the subscriber thread; the message is redelivered
            log.exception("unexpected error handling message %s; nacking", message.message_id)
            self._metrics.land_errors.labels("unexpected").inc()
            message.nack()
        finally:
            with self._lock:
                self._held.pop(key, None)

    def _handle(self, message: Any) -> None:
        try:
            self._lander.land(message.data, message.attributes)
        except PoisonEnvelope as poison:
            self._poison(message, poison)
            return
        except StoreError as exc:
            kind = "transient_exhausted" if exc.transient else "permanent"
            self._metrics.land_errors.labels(kind).inc()
            log.error("landing message %s failed (%s), nacking: %s", message.message_id, kind, exc)
            if not exc.transient:
                # No retries were spent: pause so a permanent error does not burn delivery attempts in a hot loop.
                self._sleep(self._nack_delay)
            message.nack()
            return
        self._ack(message)

    def _poison(self, message: Any, poison: PoisonEnvelope) -> None:
        try:
            self._dead_letter.publish(message.data, dead_letter_attributes(message, poison.reason, poison.detail))
        except Exception as exc:
            self._metrics.land_errors.labels("dead_letter_publish").inc()
            log.error("dead-lettering message %s failed, nacking: %r", message.message_id, exc)
            message.nack()
            return
        self._metrics.dead_lettered.labels(poison.reason).inc()
        log.warning("dead-lettered message %s: %s", message.message_id, poison)
        self._crash.point("dead_letter.after_publish")
        self._ack(message)

    def _ack(self, message: Any) -> None:
        # The landing thread does not wait for the ack's confirmation: the object exists, so a lost ack only costs a
        # redelivery that answers 412 and acks again. Waiting held a landing thread per message for a dispatcher
        # round trip (65% of the landing threads' time in the 2026-11-26 profile). On shutdown the client's
        # dispatcher sends every queued ack before it stops.
        if self._exactly_once:
            message.ack_with_response().add_done_callback(lambda f: self._ack_done(f, message.message_id))
        else:
            message.ack()
            self._metrics.messages_acked.inc()

    def _ack_done(self, future: Any, message_id: str) -> None:
        """Count a confirmed ack; log an unconfirmed one (harmless, see ``_ack``). Runs on the client's thread."""
        exc = future.exception()
        if exc is None:
            self._metrics.messages_acked.inc()
        else:
            log.warning("ack of %s not confirmed: %r", message_id, exc)
