"""``DurableSink``: makes each envelope durable, in Pub/Sub or in the spool, and replays the spool.

Contract:
  * ``submit(envelope, done)`` never blocks on the network or disk. ``done(None)`` is called exactly once when the
    envelope is durable: Pub/Sub confirmed it, or it was fsync'd to the spool. ``done(error)`` is called instead when
    neither is possible (``SpoolFull``, or ``NotDurable`` on a disk error); its events must then not be acked.
  * A publish that fails, or is not confirmed within ``publish_timeout_s``, goes to the spool. While the spool holds
    anything (an outage), new envelopes go straight to the spool, so replay keeps their order and clients are not
    held for a timeout each.
  * The replayer publishes spool files oldest first with their original ``envelope_id`` and attributes, and deletes a
    file only after Pub/Sub confirmed it. A late confirmation of an envelope that was already spooled means it is
    published twice; consumers deduplicate on ``envelope_id``.
  * The replayer never stops before ``stop``: a local I/O error (reading, deleting or moving a file) is logged,
    counted (``replay_errors``) and retried on a later pass, with a growing delay while no file leaves the spool. An
    unreadable file is skipped for the pass (up to a window of them), so the files behind it still drain. A file that
    can never be published is moved aside (``Spool.quarantine``), logged and counted (``spool_quarantined``), never
    deleted: a corrupt one to ``corrupt/``, one whose category ``topic_for`` does not know (``KeyError``: the catalog
    dropped it since the file was written) to ``unknown-category/``, and one the publisher refuses synchronously as
    malformed (``ValueError``/``TypeError``, e.g. ``MessageTooLargeError``: no retry can help) to ``unpublishable/``.
  * An envelope over ``MAX_MESSAGE_BYTES``, or one the publisher refuses synchronously as malformed, is never spooled:
    ``done(NotDurable)`` at once (the packer's size bounds make it impossible; this keeps it from being acked and
    then blocking the spool if they are ever wrong).
  * ``drain`` is for shutdown: it waits for in-flight publishes, spools the ones still pending at its deadline, and
    returns when nothing is in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from service.envelope import MAX_MESSAGE_BYTES, EncodedEnvelope
from service.frontend.errors import NotDurable, SpoolCorrupt, SpoolFull
from service.frontend.metrics import Metrics
from service.frontend.publisher import Publisher
from service.frontend.spool import Spool, SpoolEntry

log = logging.getLogger(__name__)
Done = Callable[[BaseException | None], None]
_REPLAY_WINDOW = 16
#: What ``Publisher.publish`` raises synchronously for a message no retry can publish (google-cloud-pubsub's
#: ``MessageTooLargeError`` is a ``ValueError``; a wrong type is a ``TypeError``).
_MALFORMED = (ValueError, TypeError)
_MAX_BACKOFF_S = 30.0


@dataclass(slots=True)
class _Pending:
    envelope: EncodedEnvelope
    done: Done
    started: float
    deadline: float


class DurableSink:
    """Publish-or-spool. Call ``start`` once before ``submit``; ``stop`` after ``drain``."""

    def __init__(
        self,
        publisher: Publisher,
        spool: Spool,
        topic_for: Callable[[str], str],
        metrics: Metrics,
        *,
        publish_timeout_s: float,
        replay_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publisher = publisher
        self._spool = spool
        self._topic_for = topic_for
        self._metrics = metrics
        self._timeout = publish_timeout_s
        self._interval = replay_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending: dict[str, _Pending] = {}
        self._spooling = 0
        self._outage = False
        self._last_replay_error = ""
        self._last_io_error = ""
        self._pass_errors = 0
        self._stop = threading.Event()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-writer")
        self._threads: list[threading.Thread] = []

    # --- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the replayer and the publish watchdog (background threads)."""
        self._outage = self._spool.depth > 0
        self._refresh_gauges()
        for name, target in (("replayer", self._replay_loop), ("publish-watchdog", self._watchdog_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def drain(self, timeout_s: float) -> bool:
        """Wait until nothing is in flight; at the deadline, spool what is still unconfirmed. True when idle."""
        deadline = self._clock() + timeout_s
        with self._lock:
            while self._pending and self._clock() < deadline:
                self._idle.wait(0.05)
            late = list(self._pending)
        for envelope_id in late:
            self._settle(envelope_id, TimeoutError("shutdown drain deadline"))
        with self._lock:
            while self._pending or self._spooling:
                self._idle.wait(0.05)
        return True

    def stop(self) -> None:
        """Stop background threads (the spool stays on disk for the next start)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self._timeout + 1)
        self._writer.shutdown(wait=True)

    @property
    def in_outage(self) -> bool:
        return self._outage

    # --- intake --------------------------------------------------------------------------------------------------
    def submit(self, envelope: EncodedEnvelope, done: Done) -> None:
        """Make ``envelope`` durable in the background; see the module contract."""
        size = len(envelope.data)
        if size > MAX_MESSAGE_BYTES:
            log.error("envelope too large to publish", extra={"envelope_id": envelope.envelope_id, "bytes": size})
            done(NotDurable(envelope.envelope_id, f"envelope is {size} bytes > {MAX_MESSAGE_BYTES}"))
            return
        if self._outage:
            self._to_spool(envelope, done)
            return
        now = self._clock()
        with self._lock:
            self._pending[envelope.envelope_id] = _Pending(envelope, done, now, now + self._timeout)
        try:
            fut = self._publisher.publish(self._topic_for(envelope.category), envelope)
        except _MALFORMED as exc:  # no retry can publish it: never spool (and ack) it
            with self._lock:
                mine = self._pending.pop(envelope.envelope_id, None) is not None
                if not self._pending:
                    self._idle.notify_all()
            if not mine:
                return  # the watchdog settled it meanwhile
            log.error("publisher refused envelope", extra={"envelope_id": envelope.envelope_id, "error": repr(exc)})
            done(NotDurable(envelope.envelope_id, f"publisher refused it: {exc!r}"))
            return
        except Exception as exc:  # the client refused synchronously (closed, flow control): same as a failure
            self._settle(envelope.envelope_id, exc)
            return
        envelope_id = envelope.envelope_id
        fut.add_done_callback(lambda f: self._settle(envelope_id, f.exception()))

    def _settle(self, envelope_id: str, error: BaseException | None) -> None:
        with self._lock:
            p = self._pending.pop(envelope_id, None)
            if not self._pending:
                self._idle.notify_all()
        if p is None:
            return  # already settled (timed out and spooled, or confirmed)
        if error is None:
            self._metrics.publish_latency.observe(self._clock() - p.started)
            p.done(None)
            return
        self._metrics.publish_failures.inc()
        if not self._outage:
            log.warning("publish failed, spooling until Pub/Sub is back", extra={"error": repr(error)})
        self._outage = True
        self._to_spool(p.envelope, p.done)

    def _to_spool(self, envelope: EncodedEnvelope, done: Done) -> None:
        with self._lock:
            self._spooling += 1
        self._writer.submit(self._write_spool, envelope, done)

    def _write_spool(self, envelope: EncodedEnvelope, done: Done) -> None:
        try:
            self._spool.write(envelope)
        except SpoolFull as exc:
            done(exc)
        except OSError as exc:
            log.error("spool write failed", extra={"envelope_id": envelope.envelope_id, "error": repr(exc)})
            done(NotDurable(envelope.envelope_id, f"spool write failed: {exc.strerror}"))
        else:
            self._metrics.envelopes_spooled.inc()
            done(None)
        finally:
            self._refresh_gauges()
            with self._lock:
                self._spooling -= 1
                self._idle.notify_all()

    # --- background ----------------------------------------------------------------------------------------------
    def _watchdog_loop(self) -> None:
        while not self._stop.wait(0.05):
            now = self._clock()
            with self._lock:
                late = [eid for eid, p in self._pending.items() if p.deadline <= now]
            for eid in late:
                self._settle(eid, TimeoutError(f"publish not confirmed within {self._timeout}s"))

    def _replay_loop(self) -> None:
        """Replay until ``stop``; never dies (see the module contract)."""
        failures = 0  # consecutive passes that failed and moved nothing out of the spool
        while not self._stop.is_set():
            self._pass_errors = 0
            try:
                progressed = self._replay_once()
            except Exception as exc:  # anything unforeseen: keep replaying, or the outage would never end
                progressed = False
                self._pass_errors += 1
                self._metrics.replay_errors.labels("pass").inc()
                log.error("spool replay pass failed; will retry", extra={"error": repr(exc)}, exc_info=True)
            if progressed:
                failures = 0
                continue
            failures = failures + 1 if self._pass_errors else 0
            self._stop.wait(min(self._interval * 2**failures, max(self._interval, _MAX_BACKOFF_S)))

    def _replay_once(self) -> bool:
        """Publish up to a window of the oldest readable spool files; True when files left the spool and nothing
        failed."""
        entries = self._spool.entries()
        if not entries:
            with self._lock:
                if self._outage and not self._spooling:
                    self._outage = False
                    log.info("spool empty, publishing directly again")
            return False
        inflight: list[tuple[SpoolEntry, Future[str]]] = []
        moved = False
        for entry in entries:
            if len(inflight) >= _REPLAY_WINDOW or self._pass_errors >= _REPLAY_WINDOW:
                break
            try:
                envelope = self._spool.read(entry)
            except SpoolCorrupt as exc:
                moved |= self._set_aside(entry, "corrupt", exc.reason)
                continue
            except FileNotFoundError:  # deleted from outside: forget it, or the spool never looks empty again
                log.error("spool file vanished; its envelope is lost", extra={"path": str(entry.path)})
                try:
                    self._spool.remove(entry)
                    moved = True
                except OSError as exc:
                    self._io_failed("remove", entry, exc)
                continue
            except OSError as exc:  # EIO, EMFILE, ...: the file stays; this pass goes on with the next ones
                self._io_failed("read", entry, exc)
                continue
            try:
                topic = self._topic_for(envelope.category)
            except KeyError:
                reason = f"category {envelope.category!r} is not in the catalog"
                moved |= self._set_aside(entry, "unknown-category", reason)
                continue
            try:
                inflight.append((entry, self._publisher.publish(topic, envelope)))
            except _MALFORMED as exc:  # never publishable: set aside, so the files behind it still drain
                moved |= self._set_aside(entry, "unpublishable", repr(exc))
                continue
            except Exception as exc:  # the client refused synchronously (closed, flow control): next pass
                self._publish_failed(exc)
                break
        ok = bool(inflight) or moved
        for entry, fut in inflight:
            try:
                fut.result(timeout=self._timeout)
            except Exception as exc:
                ok = False
                self._publish_failed(exc)
                continue
            try:
                self._spool.remove(entry)
            except OSError as exc:  # kept, so published again later (same envelope_id): a harmless duplicate
                ok = False
                self._io_failed("remove", entry, exc)
                continue
            self._metrics.envelopes_replayed.inc()
        if not self._pass_errors:
            self._last_io_error = ""
        self._refresh_gauges()
        return ok

    def _set_aside(self, entry: SpoolEntry, folder: str, reason: str) -> bool:
        """Quarantine a file that can never be published; True when it moved."""
        try:
            dest = self._spool.quarantine(entry, folder)
        except OSError as exc:
            self._io_failed("quarantine", entry, exc)
            return False
        self._metrics.spool_quarantined.labels(folder.replace("-", "_")).inc()
        log.error(
            "spool file can never be published; moved aside for an operator",
            extra={"path": str(dest), "envelope_id": entry.envelope_id, "reason": reason},
        )
        return True

    def _io_failed(self, stage: str, entry: SpoolEntry, exc: OSError) -> None:
        self._pass_errors += 1
        self._metrics.replay_errors.labels(stage).inc()
        if repr(exc) != self._last_io_error:  # once per distinct error while it persists, not every pass
            self._last_io_error = repr(exc)
            log.error(
                "spool replay I/O error; file kept, will retry",
                extra={"stage": stage, "path": str(entry.path), "error": repr(exc), "depth": self._spool.depth},
            )

    def _publish_failed(self, exc: BaseException) -> None:
        if repr(exc) != self._last_replay_error:  # log each distinct failure once, not every interval
            self._last_replay_error = repr(exc)
            log.warning("spool replay failed; will retry", extra={"error": repr(exc), "depth": self._spool.depth})

    def _refresh_gauges(self) -> None:
        self._metrics.spool_depth.set(self._spool.depth)
        self._metrics.spool_bytes.set(self._spool.bytes)
