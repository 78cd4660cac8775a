"""The ledger of outcomes shared by the sync and async clients: what ``flush`` returns and what ``on_rejected``
receives."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import grpc

from service.client.results import Failure, FlushResult, Rejection
from service.contract import Event, PublishResponse, StatusCode

log = logging.getLogger("service.client")

#: Receives each rejection or failure as it happens (from a background thread / task). Must not block.
Callback = Callable[[Rejection | Failure], None]


class Ledger:
    """Accumulates outcomes until ``take``; calls ``callback`` for each rejection/failure. Thread-safe.

    Lists at most ``max_listed`` rejections + failures between two ``take`` calls and counts the rest (G4). An
    exception raised by ``callback`` is logged and does not change any event's outcome."""

    def __init__(self, callback: Callback | None, max_listed: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._max_listed = max_listed
        self._accepted = 0
        self._rejected: list[Rejection] = []
        self._failed: list[Failure] = []
        self._rejected_more = 0
        self._failed_more = 0
        self._callback = callback

    def record_response(self, events: Sequence[Event], response: PublishResponse) -> None:
        """Count accepted events and collect rejections; works with full and compact (rejections-only) responses."""
        rejected: list[Rejection] = []
        for s in response.statuses:
            if s.code != StatusCode.ACCEPTED and s.index < len(events):
                e = events[s.index]
                rejected.append(Rejection(e.event_id, e.category, StatusCode.Name(s.code), s.message))
        failed: list[Failure] = []
        if response.accepted + response.rejected != len(events):
            failed = [Failure(e.event_id, e.category, "UNKNOWN", "the response does not account for every event")
                      for e in events]  # fmt: skip
            self._add(0, [], failed)
            return
        self._add(response.accepted, rejected, failed)

    def record_failure(self, events: Sequence[Event], exc: BaseException) -> None:
        code = exc.code().name if isinstance(exc, grpc.RpcError) and hasattr(exc, "code") else type(exc).__name__
        details = exc.details() if isinstance(exc, grpc.RpcError) and hasattr(exc, "details") else str(exc)
        self._add(0, [], [Failure(e.event_id, e.category, code, str(details)) for e in events])

    def _add(self, accepted: int, rejected: list[Rejection], failed: list[Failure]) -> None:
        with self._lock:
            self._accepted += accepted
            room = max(0, self._max_listed - len(self._rejected) - len(self._failed))
            self._rejected.extend(rejected[:room])
            self._rejected_more += max(0, len(rejected) - room)
            room = max(0, room - len(rejected))
            self._failed.extend(failed[:room])
            self._failed_more += max(0, len(failed) - room)
        if self._callback is not None:
            self._notify([*rejected, *failed])

    def _notify(self, items: list[Rejection | Failure]) -> None:
        assert self._callback is not None
        errors = 0
        first: Exception | None = None
        for item in items:
            try:
                self._callback(item)
            except Exception as exc:  # the user's callback must not change outcomes or stop the client
                errors += 1
                first = first or exc
        if first is not None:
            log.error("on_rejected raised for %d of %d outcomes (they are still reported by flush)", errors,
                      len(items), exc_info=first)  # fmt: skip

    def take(self) -> FlushResult:
        with self._lock:
            result = FlushResult(self._accepted, self._rejected, self._failed, self._rejected_more, self._failed_more)
            self._accepted, self._rejected, self._failed = 0, [], []
            self._rejected_more = self._failed_more = 0
        return result
