"""``ByteBudget``: a process-wide bound on the bytes the landing threads decompress at once (G4).

Why: ``max_uncompressed`` bounds one envelope, not the process. Eight landing threads each decompressing a small zstd
bomb to the per-envelope limit would together allocate eight limits; with several tiers, more. A lander takes from
one shared budget, before decompressing, the most the envelope can decompress to (``decode.decompressed_bound``),
and gives it back once the decompressed body and whatever was parsed from it are dropped.

Contract:
  * ``hold(n)`` is a context manager: it blocks until ``n`` bytes are free, holds them for the ``with`` body, and
    releases them on exit, whatever the body raises. Waiters are served first come, first served, so a large
    request is not starved by a stream of small ones.
  * No deadlock: a request is clamped to ``total`` (it never waits for more than exists), and a thread holds at most
    one grant at a time (the lander takes one per message and never nests).
  * The wait is bounded: after ``timeout`` seconds ``hold`` raises ``BudgetExhausted`` (a transient ``StoreError``:
    the message handler nacks, and Pub/Sub redelivers the message later). Each grant is held only while one envelope
    is decompressed, scanned and, when it must be, parsed (milliseconds), never across an upload.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from replicator.errors import StoreError

MIB: Final = 1024 * 1024
#: The process-wide default: 8 envelopes at the landing limit (``landing.MAX_UNCOMPRESSED``), 1/4 of the default
#: 2 GiB replicator pod.
DEFAULT_TOTAL_BYTES: Final = 512 * MIB
DEFAULT_TIMEOUT_SECONDS: Final = 30.0


class BudgetExhausted(StoreError):
    """``hold`` waited ``timeout`` seconds without getting its bytes. Transient: nack and let Pub/Sub redeliver."""

    def __init__(self, requested: int, total: int, timeout: float) -> None:
        super().__init__(
            "decompress",
            f"{requested} bytes",
            f"decompression budget of {total} bytes busy for {timeout:g} s",
            transient=True,
        )
        self.requested = requested


class ByteBudget:
    """A counting semaphore of bytes, FIFO. Thread-safe; no I/O."""

    def __init__(
        self,
        total: int = DEFAULT_TOTAL_BYTES,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total <= 0:
            raise ValueError("total must be positive")
        self.total = total
        self._timeout = timeout
        self._clock = clock
        self._used = 0
        self._peak = 0
        self._queue: deque[object] = deque()  # one token per waiting or granting call, in arrival order
        self._cond = threading.Condition()

    @property
    def used(self) -> int:
        """Bytes held now."""
        with self._cond:
            return self._used

    @property
    def peak(self) -> int:
        """The most bytes ever held at once (never above ``total``)."""
        with self._cond:
            return self._peak

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[int]:
        """Hold ``min(nbytes, total)`` bytes for the ``with`` body (yields that amount). Blocks first come, first
        served; raises ``BudgetExhausted`` after ``timeout`` seconds without them (nothing is then held)."""
        n = max(0, min(nbytes, self.total))
        self._acquire(n)
        try:
            yield n
        finally:
            with self._cond:
                self._used -= n
                self._cond.notify_all()

    def _acquire(self, n: int) -> None:
        token = object()
        deadline = self._clock() + self._timeout
        with self._cond:
            self._queue.append(token)
            try:
                while self._queue[0] is not token or self._used + n > self.total:
                    left = deadline - self._clock()
                    if left <= 0:
                        raise BudgetExhausted(n, self.total, self._timeout)
                    self._cond.wait(left)
                self._used += n
                self._peak = max(self._peak, self._used)
            finally:
                self._queue.remove(token)
                self._cond.notify_all()  # the next in line may fit now (or the head left on timeout)


_PROCESS_BUDGET: ByteBudget | None = None
_PROCESS_LOCK = threading.Lock()


def process_budget() -> ByteBudget:
    """The one budget every ``Lander`` of this process shares unless given its own (created on first use)."""
    global _PROCESS_BUDGET
    with _PROCESS_LOCK:
        if _PROCESS_BUDGET is None:
            _PROCESS_BUDGET = ByteBudget()
        return _PROCESS_BUDGET
