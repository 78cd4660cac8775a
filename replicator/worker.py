"""``Worker``: one ``logpipe replicate`` process. Streaming pull per tier + a finalizer loop + graceful shutdown.

Lifecycle:
  * ``start()`` opens one streaming pull per tier (flow control by messages and bytes; leases extended by the client
    up to ``max_lease_seconds``) and starts the finalizer thread. Logs ``replicator ready tiers=...``.
  * ``stop()`` (SIGTERM/SIGINT) cancels the pulls so no new message arrives (messages queued but not started are
    nacked by the client), waits up to ``drain_timeout`` for running callbacks (each lands and acks, or nacks),
    stops the finalizer (it starts no partition, and leaves the one it works on at its next step, releasing its
    claim), and returns. Whatever still runs is abandoned: the entry point then ends the process with ``os._exit``
    (no waiting on stuck threads); the messages stay unacked and Pub/Sub redelivers them; landing is idempotent.
  * Closability (docs/design.md, "Watermark"): W = min(now, publish time of the oldest message held (queued in the
    scheduler or running), oldest publish time among the messages started in the last ``receive_window``); a
    partition is closable when W >= hour end + lateness, and so is every live worker's W of its tier
    (``replicator/watermarks.py``: each worker publishes its W every ``heartbeat_seconds``), and the worker has
    started a message or pulled for ``receive_window`` (before either, it cannot tell an empty subscription from an
    undelivered backlog).
  * The finalizer loop (``_finalize_loop``, every ``finalize_interval`` +-50 %) runs ``Finalizer.run_pass``. Its first
    pass, and then one pass every ``finalize_full_scan_seconds`` (kept due while its listings fail), lists every
    staging object; the others list only the staging days of the last ``finalize_hot_hours`` (docs/design.md,
    "Finalization"). So late data into an hour older than the hot window commits at the next full scan.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from replicator.claims import PartitionClaims
from replicator.config import ReplicatorConfig
from replicator.crash import CrashPoints
from replicator.errors import StoreError
from replicator.finalize import CommitListener, Finalizer, FinalizeSettings
from replicator.handler import MessageHandler, PubsubDeadLetter
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.scheduler import TrackingScheduler, prestarted
from replicator.store import ObjectStore
from replicator.watermarks import SharedWatermark
from service.catalog import Catalog

log = logging.getLogger(__name__)
_WITHDRAW_WAIT_S = 5.0  # how long a stopping worker waits to delete its heartbeats


class Worker:
    """Runs the replicator for ``tiers`` of ``catalog``. Clients are injected; no I/O in the constructor."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        tiers: tuple[str, ...],
        project: str,
        store: ObjectStore,
        subscriber: Any,
        publisher: Any,
        metrics: Metrics,
        settings: ReplicatorConfig,
        crash: CrashPoints,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        listeners: list[CommitListener] | None = None,
    ) -> None:
        self._catalog = catalog
        self._tiers = tiers
        self._project = project
        self._store = store
        self._subscriber = subscriber
        self._publisher = publisher
        self._metrics = metrics
        self._cfg = settings
        self._crash = crash
        self._clock = clock
        self._stop = threading.Event()
        self._futures: list[Any] = []
        self._handlers: list[MessageHandler] = []
        self._categories = tuple(c.name for t in tiers for c in catalog.categories_in(t))
        self.finalizer = Finalizer(
            store,
            catalog,
            metrics,
            FinalizeSettings(
                settings.target_file_bytes,
                settings.writer,
                settings.lateness,
                hot_window=settings.finalize_hot_window,
                full_scan_interval=settings.finalize_full_scan_interval,
            ),
            clock=clock,
            crash=crash,
            listeners=list(listeners or []),
            stopping=self._stop.is_set,
            claims=None
            if (ttl := settings.finalize_claim_ttl) is None
            else PartitionClaims(store, settings.writer, ttl, metrics, clock),
        )
        self._threads: list[threading.Thread] = []
        stale = dt.timedelta(seconds=3 * settings.heartbeat_seconds + settings.lease_extension_seconds)
        self._shared = {t: SharedWatermark(store, t, settings.writer, clock, stale_after=stale) for t in tiers}
        self._tier_of = {c.name: t for t in tiers for c in catalog.categories_in(t)}
        self._published = False  # a heartbeat was written at least once (so there is one to withdraw)
        self._pulling_since: dt.datetime | None = None  # set by start()
        self._handler_of: dict[str, MessageHandler] = {}  # tier -> its subscription's handler, set by start()

    # --- watermark -----------------------------------------------------------------------------------------------
    def watermark(self) -> dt.datetime:
        """min(now, publish time of the oldest message this worker holds, oldest publish time among the messages it
        started in the last ``receive_window_seconds``)."""
        now = self._clock()
        held = [t for h in self._handlers if (t := h.oldest_held()) is not None]
        recent = [t for h in self._handlers if (t := h.oldest_recent()) is not None]
        return min([now, *held, *recent])

    def closable(self, p: Partition) -> bool:
        """This worker's watermark and every other live worker's of ``p``'s tier are past ``p``'s end + lateness.
        False when the other workers' heartbeats cannot be listed (closing can wait; an early ``_SUCCESS`` cannot be
        taken back)."""
        deadline = p.end + self._cfg.lateness
        tier = self._tier_of.get(p.category, "")
        if self.watermark() < deadline or self._unheard(tier):
            return False
        shared = self._shared.get(tier)
        if shared is None:
            return True
        try:
            others = shared.others()
        except StoreError as exc:
            log.warning("cannot read the other workers' watermarks; %s stays open: %s", p.category, exc)
            return False
        if others is not None and others < deadline:
            log.info("%s %s waits for another worker's watermark (%s)", p.category, p.hour.isoformat(), others)
            return False
        return True

    def _unheard(self, tier: str) -> bool:
        """True while this worker has pulled ``tier``'s subscription for less than ``receive_window`` and started no
        message of it yet: it cannot tell an empty subscription from a backlog (or a dead worker's messages) not
        delivered yet, so it closes none of the tier's partitions (docs/design.md, "Watermark"). Per tier: another
        tier's first message says nothing about this one's backlog. Always False for a worker never started."""
        handler = self._handler_of.get(tier)
        if self._pulling_since is None or handler is None or handler.started_any:
            return False
        return (self._clock() - self._pulling_since).total_seconds() < self._cfg.receive_window_seconds

    def publish_watermarks(self) -> None:
        """Publish this worker's watermark for each of its tiers (the heartbeat). Logs, never raises."""
        w = self.watermark()
        for tier, shared in self._shared.items():
            try:
                shared.publish(w)
                self._published = True
            except Exception as exc:  # the next heartbeat retries; stale heartbeats are ignored by the others
                log.warning("publishing the watermark of tier %s failed: %r", tier, exc)

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the streaming pulls and start the background threads. Raises on an unreachable subscription."""
        self._pulling_since = self._clock()
        opened = self._store.open_connections(self._cfg.threads * len(self._tiers))  # one per landing thread
        log.info("opened %d upload connections", opened)
        from google.cloud import pubsub_v1

        flow = pubsub_v1.types.FlowControl(
            max_messages=self._cfg.max_messages,
            max_bytes=self._cfg.max_bytes,
            max_lease_duration=self._cfg.max_lease_seconds,
            # Each lease extension is this long: it bounds how late a dead worker's messages are redelivered.
            min_duration_per_lease_extension=self._cfg.lease_extension_seconds,
            max_duration_per_lease_extension=self._cfg.lease_extension_seconds,
        )
        # The start-up cost so far (imports, clients, connections); `logpipe bench replicate` charges the landing
        # only what the process spends after this line, since the pulls deliver before ``replicator ready``.
        log.info("replicator opening pulls cpu_seconds=%.3f", time.process_time())
        for tier in self._tiers:
            sub_path = self._subscriber.subscription_path(self._project, self._catalog.subscription(tier))
            exactly_once = bool(self._subscriber.get_subscription(subscription=sub_path).enable_exactly_once_delivery)
            dlq = PubsubDeadLetter(
                self._publisher,
                self._publisher.topic_path(self._project, self._catalog.dead_letter_topic(tier)),
                self._cfg.dead_letter_timeout,
            )
            lander = Lander(self._store, self._catalog.categories_in(tier), self._metrics, crash=self._crash)
            handler = MessageHandler(
                lander,
                dlq,
                self._metrics,
                exactly_once=exactly_once,
                crash=self._crash,
                clock=self._clock,
                nack_delay=self._cfg.nack_delay,
                receive_window=self._cfg.receive_window_seconds,
            )
            self._handlers.append(handler)
            self._handler_of[tier] = handler
            executor = prestarted(self._cfg.threads, f"land-{tier}")
            # await_callbacks_on_shutdown: on cancel, running callbacks finish (and their acks are sent, the
            # dispatcher is stopped only after them); queued ones are nacked by the client.
            future = self._subscriber.subscribe(
                sub_path,
                handler,
                flow_control=flow,
                scheduler=TrackingScheduler(executor, handler),
                await_callbacks_on_shutdown=True,
            )
            self._futures.append(future)
            log.info("subscribed %s (exactly_once=%s)", sub_path, exactly_once)
        self._spawn("gauges", self._gauge_loop)
        self.publish_watermarks()
        self._spawn("heartbeats", self._heartbeat_loop)
        if self._cfg.finalize:
            self._spawn("finalizer", self._finalize_loop)
        log.info("replicator ready tiers=%s", ",".join(self._tiers))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _gauge_loop(self) -> None:
        while not self._stop.wait(1.0):
            held = [t for h in self._handlers if (t := h.oldest_held()) is not None]
            age = (self._clock() - min(held)).total_seconds() if held else 0.0
            self._metrics.oldest_unacked_age.set(max(0.0, age))
            self._metrics.in_flight.set(sum(h.in_flight() for h in self._handlers))

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self._cfg.heartbeat_seconds):
            self.publish_watermarks()

    def _finalize_loop(self) -> None:
        # Jitter keeps N workers from finalizing the same partition at the same instant (a lost race costs a rerun).
        while not self._stop.wait(self._cfg.finalize_interval * random.uniform(0.5, 1.5)):
            try:
                for m in self.finalizer.run_pass(self._categories, self._closable_unless_stopping):
                    shard = f" shard {m.shard.index} of {m.shard.count}" if m.shard.count > 1 else ""
                    log.info("committed %s %s%s generation %d", m.category, m.partition_label, shard, m.generation)
            except Exception as exc:  # listing failed etc.; the next pass retries
                self._metrics.finalize_errors.labels(type(exc).__name__).inc()
                log.error("finalizer pass failed: %r", exc)

    def _closable_unless_stopping(self, p: Partition) -> bool:
        return not self._stop.is_set() and self.closable(p)

    def request_stop(self) -> None:
        """Ask ``wait`` to return (safe from a signal handler); the caller then calls ``stop``."""
        self._stop.set()

    def stop(self) -> None:
        """Stop pulling, drain in-flight work for up to ``drain_timeout`` seconds, stop the threads. Idempotent."""
        self._stop.set()
        for f in self._futures:
            f.cancel()
        deadline = time.monotonic() + self._cfg.drain_timeout
        for f in self._futures:
            try:
                f.result(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                pass
            except Exception as exc:  # the stream ended with an error; nothing more to drain from it
                log.info("streaming pull ended: %r", exc)
        left = sum(h.in_flight() for h in self._handlers)
        if left:
            log.warning("abandoning %d in-flight messages (unacked; Pub/Sub will redeliver them)", left)
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        dropped = min((d for h in self._handlers if (d := h.oldest_dropped()) is not None), default=None)
        if self._published:
            # Nothing held and nothing dropped: the other workers need not wait for this one's heartbeat to go stale.
            # Otherwise a last heartbeat holds the abandoned and the dropped (nacked) messages' publish times until it
            # goes stale, by when Pub/Sub has redelivered them to the others. Best effort and bounded (a store outage
            # must not hold the exit; the last periodic heartbeat then goes stale by itself).
            last = (lambda: self._publish_last(dropped)) if left or dropped else self._withdraw
            t = threading.Thread(target=last, name="withdraw", daemon=True)
            t.start()
            t.join(timeout=_WITHDRAW_WAIT_S)
        log.info("replicator stopped")

    def _publish_last(self, dropped: dt.datetime | None) -> None:
        w = self.watermark() if dropped is None else min(self.watermark(), dropped)
        for tier, shared in self._shared.items():
            try:
                shared.publish(w)
            except Exception as exc:
                log.info("publishing the last watermark of tier %s failed (the old one goes stale): %r", tier, exc)

    def _withdraw(self) -> None:
        for shared in self._shared.values():
            try:
                shared.withdraw()
            except Exception as exc:
                log.info("withdrawing the watermark failed (it goes stale): %r", exc)

    def wait(self) -> None:
        """Block until ``request_stop``/``stop`` is called, or a streaming pull fails for good (then re-raise)."""
        while not self._stop.wait(0.5):
            for f in self._futures:
                if f.done() and not self._stop.is_set():
                    f.result()
