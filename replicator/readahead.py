"""Bounded read-ahead: overlap the round trips of many small object reads without holding them all in memory.

Finalization and the loader's conversion read staging objects one by one. At a low rate per (category, hour), the
front-ends seal small envelopes every ``envelope_max_latency_ms``, so a partition can hold thousands of small
staging objects; read one after another, their round trips dominate (hundreds of seconds for a chaos run's
backlog). ``ordered_map`` keeps up to ``window`` calls in flight on a thread pool and yields the results in input
order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], *, threads: int = 8, window: int = 32) -> Iterator[R]:
    """Yield ``fn(item)`` for each item, in input order, with at most ``window`` calls started but not yet yielded.

    Memory: at most ``window`` results are held at once (G4), whatever the number of items. An exception raised by
    ``fn`` is raised here at that item's turn; the calls not yet started are then cancelled, and the ones running are
    left to finish in the background (closing the generator early does the same). Blocks while waiting for the next
    result in order.
    """
    if threads < 1 or window < 1:
        raise ValueError("threads and window must be >= 1")
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="read-ahead")
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
