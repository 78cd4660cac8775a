"""``InflightBytes``: the bound on accepted-but-not-yet-durable bytes (G4).

Contract: ``try_acquire`` never blocks; it refuses (False) when the bound would be exceeded, so the caller answers
RESOURCE_EXHAUSTED instead of queueing. One request larger than the whole bound is let through when nothing else is
in flight, so it can always make progress. Thread-safe.
"""

from __future__ import annotations

import threading

from service.frontend.metrics import Metrics


class InflightBytes:
    def __init__(self, limit: int, metrics: Metrics) -> None:
        self._limit = limit
        self._used = 0
        self._lock = threading.Lock()
        self._metrics = metrics

    @property
    def used(self) -> int:
        return self._used

    def try_acquire(self, n: int) -> bool:
        with self._lock:
            if self._used and self._used + n > self._limit:
                return False
            self._used += n
            used = self._used
        self._metrics.inflight_bytes.set(used)
        return True

    def release(self, n: int) -> None:
        with self._lock:
            self._used -= n
            used = self._used
        self._metrics.inflight_bytes.set(used)
