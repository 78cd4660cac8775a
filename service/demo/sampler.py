"""Resource sampling of running processes (RSS, open files, threads, CPU), for the soak and the benchmarks.

Contract: ``ResourceSampler`` polls in a daemon thread every ``interval_s`` until ``stop()``; a process that is gone
is skipped (its series just ends). Samples are plain dicts, ready for JSON.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil


class ResourceSampler:
    """Samples every process returned by ``pids()`` (name -> pid) each ``interval_s`` seconds."""

    def __init__(self, pids: Callable[[], dict[str, int]], interval_s: float = 5.0) -> None:
        self._pids = pids
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._procs: dict[int, psutil.Process] = {}
        self.samples: list[dict[str, Any]] = []
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        return self.samples

    def _process(self, pid: int) -> psutil.Process:
        if pid not in self._procs:
            self._procs[pid] = psutil.Process(pid)
            self._procs[pid].cpu_percent()
        return self._procs[pid]

    def sample_once(self) -> None:
        t = round(time.monotonic() - self._t0, 2)
        for name, pid in self._pids().items():
            try:
                p = self._process(pid)
                tree = [p, *p.children(recursive=True)]
                self.samples.append(
                    {
                        "t": t,
                        "name": name,
                        "pid": pid,
                        "rss_mb": round(sum(q.memory_info().rss for q in tree) / 2**20, 1),
                        "fds": sum(q.num_fds() for q in tree),
                        "threads": sum(q.num_threads() for q in tree),
                        "cpu_pct": round(p.cpu_percent(), 1),
                    }
                )
            except psutil.Error:
                continue

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_once()
            self._stop.wait(self._interval)


def trend(samples: list[dict[str, Any]], name: str, key: str, warmup_fraction: float = 0.2) -> dict[str, float]:
    """How flat the curve of ``key`` for process ``name`` is, after warm-up.

    The first ``warmup_fraction`` of the samples is warm-up (imports, caches and pools filling, the allocator reaching
    its working set) and is left out; of the rest, the first-quarter median is compared with the last-quarter median
    (medians, so that a pool that exists only while a pass runs, e.g. the loader's conversion threads, is not read
    as growth). ``growth_pct`` is that change in percent. ``start`` and ``peak`` are the raw first and highest
    values, warm-up included, for the report. Fewer than 8 samples give NaN (too short to judge).
    """
    series = [float(s[key]) for s in samples if s["name"] == name]
    if len(series) < 8:
        nan = float("nan")
        return {"start": nan, "peak": nan, "first": nan, "last": nan, "growth_pct": nan}
    steady = series[int(len(series) * warmup_fraction) :]
    q = max(1, len(steady) // 4)
    first, last = statistics.median(steady[:q]), statistics.median(steady[-q:])
    growth = 100.0 * (last - first) / first if first else 0.0
    return {"start": series[0], "peak": max(series), "first": first, "last": last, "growth_pct": growth}
