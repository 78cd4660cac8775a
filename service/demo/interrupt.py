"""SIGTERM and SIGINT stop the demo, the benchmarks and the soak without leaving a process behind.

Contract of ``stop_children_on_signals``:
  * The first SIGTERM or SIGINT raises ``Interrupted`` in the main thread, so every ``with Pipeline(...)`` and
    ``try``/``finally`` on the way out stops what it started (the same unwinding as Ctrl-C). Later signals are
    ignored, so that this clean-up is not cut short; it is bounded by the stop grace periods.
  * On the way out, whatever the reason, every child process of this one that is still alive is stopped by its pid:
    a child started in the instant before the signal, before its owner recorded it, or one whose owner's ``stop``
    was itself interrupted. A child that leads its own process group (``procs.start`` starts each child in a new
    session) is stopped with its whole group, which takes grandchildren such as the emulators' JVMs with it.
  * A SIGKILL of this process cannot be handled; ``logpipe local`` on the same state directory cleans up after it
    (``launcher.clean_stale``).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType

import psutil

from service.local import procs

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop was requested by ``signum``. A ``BaseException``, like ``KeyboardInterrupt``, so that no ``except
    Exception`` on the way out swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def stop_children_on_signals(grace_s: float = 10.0) -> Iterator[None]:
    """Turn the first SIGTERM/SIGINT into ``Interrupted``; on exit stop every surviving child (see module doc).

    Must be entered in the main thread (Python runs signal handlers there). Restores the previous handlers on exit.
    """
    state: dict[str, int | bool | None] = {"signum": None, "stopping": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if state["signum"] is None and not state["stopping"]:
            state["signum"] = signum
            raise Interrupted(signum)
        # Already stopping: ignore it, so that the clean-up runs to the end.

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        yield
    finally:
        state["stopping"] = True
        try:
            stop_surviving_children(grace_s)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def stop_surviving_children(grace_s: float) -> list[int]:
    """Stop every live child of this process (SIGTERM, SIGKILL after ``grace_s``) and reap it; returns the pids.

    Blocks until they are gone."""
    own_group = os.getpgid(0)
    leaders: list[psutil.Process] = []
    others: list[psutil.Process] = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            pgid = os.getpgid(child.pid)
        except (psutil.Error, ProcessLookupError):
            continue
        # A group leader other than us is stopped with its group; a child in our own group (a subprocess.run, say)
        # is signalled alone, never with the group, which would signal this process too.
        (leaders if pgid == child.pid and pgid != own_group else others).append(child)
    for proc in others:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    procs.kill_groups([p.pid for p in leaders], grace_s)
    _, alive = psutil.wait_procs(others, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs([*leaders, *others], timeout=5.0)  # reaps them (they are our children)
    return [p.pid for p in (*leaders, *others)]
