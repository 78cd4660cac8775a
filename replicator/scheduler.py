"""The streaming pull's scheduler: a ``ThreadScheduler`` that tells the handler which messages wait in its queue.

Why (G3, docs/design.md "Watermark"): the client hands a message to the scheduler as soon as flow control admits it,
and the message may then wait in the executor's queue behind the running callbacks. Without this, the watermark saw
a message only once its callback started, so a queued message published before an hour's deadline was invisible
to the finalizer, which could write ``_SUCCESS`` early. Contract: every message passed to ``schedule`` is reported
to ``queued`` before it can run; a message the executor refuses, or that ``shutdown`` drops (the client nacks those),
is reported to ``dropped``. The handler itself forgets a message when its callback returns.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler


class QueueListener(Protocol):
    """What the scheduler reports to (``MessageHandler``)."""

    def queued(self, message: Any) -> None: ...

    def dropped(self, message: Any) -> None: ...


class TrackingScheduler(ThreadScheduler):  # type: ignore[misc]  # the library ships no types for it
    """``ThreadScheduler`` on ``executor`` that reports queued and dropped messages to ``listener``."""

    def __init__(self, executor: ThreadPoolExecutor, listener: QueueListener) -> None:
        super().__init__(executor=executor)
        self._pool = executor
        self._listener = listener

    def schedule(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Report ``args[0]`` (the message, by the client's convention) as queued, then submit the callback."""
        message = args[0] if args else None
        if message is not None:
            self._listener.queued(message)
        try:
            self._pool.submit(callback, *args, **kwargs)
        except RuntimeError:  # the executor is shut down: the message never runs, the client redelivers it
            if message is not None:
                self._listener.dropped(message)
            warnings.warn("Scheduling a callback after executor shutdown.", category=RuntimeWarning, stacklevel=2)

    def shutdown(self, await_msg_callbacks: bool = False) -> list[Any]:
        """As ``ThreadScheduler.shutdown``; the messages it drops from the queue are reported as dropped."""
        dropped: list[Any] = super().shutdown(await_msg_callbacks=await_msg_callbacks)
        for message in dropped:
            self._listener.dropped(message)
        return dropped


def prestarted(threads: int, prefix: str) -> ThreadPoolExecutor:
    """A pool whose ``threads`` threads all exist on return (a ThreadPoolExecutor starts them lazily, on bursts).

    Why: a pool that fills up over minutes is indistinguishable from a thread leak in a soak's curves; a fixed
    thread count from the start makes "threads stay flat" checkable. Blocks until every thread has started.
    """
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=prefix)
    barrier = threading.Barrier(threads)  # each task waits for all the others, so each one needs its own thread
    for f in [executor.submit(barrier.wait) for _ in range(threads)]:
        f.result()
    return executor
