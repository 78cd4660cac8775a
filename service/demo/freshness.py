"""Freshness probes: when does an event become queryable in BigQuery?

Probe events carry the attribute ``probe=1``. ``ProbePoller`` queries the user-facing names every ``interval_s`` and
records the first wall-clock time each probe id is visible. Freshness of a probe = first seen - sent (the send time
upper-bounds the ack time by the ack latency, tens of milliseconds, so this slightly overstates ack->queryable).
Resolution is ``interval_s``.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any


class ProbePoller:
    """Polls BigQuery in a daemon thread until ``stop()``; ``seen`` maps probe event_id -> first-seen epoch seconds."""

    def __init__(self, bq: Any, project: str, dataset: str, categories: list[str], interval_s: float = 1.0) -> None:
        self._bq, self._project, self._dataset = bq, project, dataset
        self._categories = categories
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.seen: dict[str, float] = {}
        self.errors = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="probe-poller", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        return self.seen

    def poll_once(self) -> None:
        for c in self._categories:
            sql = (
                f"SELECT event_id FROM `{self._project}.{self._dataset}.{c}` "
                "WHERE JSON_VALUE(attributes, '$.probe') = '1'"
            )
            try:
                rows = list(self._bq.query(sql).result())
            except Exception:  # a failed poll is retried next tick; count it
                self.errors += 1
                continue
            now = time.time()
            for r in rows:
                self.seen.setdefault(r[0], now)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._interval)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of ``values`` (nearest-rank); NaN when empty."""
    if not values:
        nan = float("nan")
        return {"p50": nan, "p90": nan, "p99": nan, "max": nan, "n": 0}
    v = sorted(values)

    def rank(q: float) -> float:
        return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": v[-1], "n": len(v)}
