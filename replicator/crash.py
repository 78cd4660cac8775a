"""Deterministic crash injection for fault tests: ``LOGPIPE_CRASH_AT=<step>[:<nth>]``.

The entry point parses the variable once (``CrashPoints.parse``) and passes the result down; protocol code calls
``crash.point("land.after_upload")`` at each step named in docs/design.md. At the n-th arrival (1-based, counted per
process) the process ends with ``os._exit(137)``: no cleanup, no flush, no ack, exactly like SIGKILL.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field

STEPS = frozenset(
    {
        "land.before_upload",
        "land.after_upload",
        "dead_letter.after_publish",
        "finalize.after_data_file",
        "finalize.after_manifest",
    }
)


@dataclass
class CrashPoints:
    """Where to crash. ``CrashPoints()`` (the default) never crashes."""

    step: str | None = None
    nth: int = 1
    _count: int = field(default=0, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @staticmethod
    def parse(spec: str | None) -> CrashPoints:
        """Parse ``<step>[:<nth>]``; empty or None means never. Raises ``ValueError`` for an unknown step."""
        if not spec:
            return CrashPoints()
        step, _, nth = spec.partition(":")
        if step not in STEPS:
            raise ValueError(f"unknown crash step {step!r}; known: {sorted(STEPS)}")
        return CrashPoints(step, int(nth) if nth else 1)

    def point(self, step: str) -> None:
        """Record an arrival at ``step``; exit the process hard when it is the configured n-th one."""
        if step != self.step:
            return
        with self._lock:
            self._count += 1
            hit = self._count == self.nth
        if hit:
            sys.stderr.write(f"LOGPIPE_CRASH_AT: crashing at {step}:{self.nth}\n")
            sys.stderr.flush()
            os._exit(137)


NEVER = CrashPoints()
