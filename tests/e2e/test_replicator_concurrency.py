"""Several workers on one subscription, redelivery, duplicate publishes, the same event_id in two envelopes, a worker
SIGKILLed mid-stream, finalizers racing on manifests; and GCS faults under a running worker. Real processes."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest
import requests
from replicator_harness import Isolated, isolated, wait_for

from replicator.scan import list_manifests
from replicator.synth import make_envelope
from service.envelope import EncodedEnvelope
from service.local.endpoints import Endpoints
from service.local.procs import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))
from http_proxy import FaultProxy, FaultRule

pytestmark = pytest.mark.e2e

FAST = (
    "--lease-extension-seconds",
    "10",
    "--lateness-seconds",
    "0",
    "--finalize-interval",
    "1",
    "--target-file-bytes",
    "8192",
    "--drain-timeout",
    "5",
    "--max-messages",
    "4",
    # A worker that received nothing (another one took every message) closes nothing for a receive window: keep the
    # start-up wait short, so a survivor whose peer was killed after acking everything commits within the test.
    "--receive-window",
    "5",
    # A SIGKILLed worker's finalization claims are taken over after 10 s (default 180).
    "--finalize-claim-seconds",
    "10",
)


def workload(now: dt.datetime, n: int) -> tuple[list[EncodedEnvelope], set[str]]:
    hours = [(now - dt.timedelta(hours=h)).replace(minute=0, second=0, microsecond=0) for h in (3, 4)]
    envs: list[EncodedEnvelope] = []
    ids: set[str] = set()
    for k in range(n):
        cat = "ads_click" if k % 3 else "login_event"
        eids = [f"{cat}-{k}-{i}" for i in range(25)]
        if k >= 6:
            eids[0] = f"{cat}-{k - 6}-1"  # the same event_id again, in a different envelope (two front-ends)
        envs.append(make_envelope(cat, eids, hours[k % 2] + dt.timedelta(minutes=k % 60), payload_bytes=300))
        ids.update(eids)
    return envs + envs[::5], ids  # every fifth envelope published twice


def check_exactly_once(iso: Isolated, expected: set[str]) -> None:
    try:
        wait_for(lambda: set(iso.committed()) == expected, 120, 0.5, "every published event committed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{iso.logs_tail()}") from None
    counts = iso.committed()
    assert {k: v for k, v in counts.items() if v != 1} == {}
    sources = [s for _, m in list_manifests(iso.store(), ["ads_click", "login_event"]) for s in m.sources]
    assert len(sources) == len(set(sources)), "a staging object was consumed by two generations"


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_race_with_redelivery_and_a_sigkill(local_cloud: Endpoints, tmp_path: Path, workers: int) -> None:
    iso = isolated(local_cloud, tmp_path, ack_deadline=10)
    try:
        envs, expected = workload(dt.datetime.now(dt.UTC), 30)
        procs = [iso.start_replicator(*FAST, "--tier", "core", name=f"w{i}") for i in range(workers)]
        iso.publish("core", envs)
        wait_for(lambda: len(iso.staged()) >= 8, 60, what="some landing")
        os.killpg(procs[0].pid, signal.SIGKILL)  # its held messages are redelivered to the others
        assert procs[0].wait(timeout=10) == -signal.SIGKILL
        check_exactly_once(iso, expected)
        for p in procs[1:]:
            p.send_signal(signal.SIGTERM)
        assert [p.wait(timeout=60) for p in procs[1:]] == [0] * (workers - 1)
    finally:
        iso.stop_all()


def _metric(port: int, name: str) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_gcs_faults_under_a_running_worker(local_cloud: Endpoints, tmp_path: Path) -> None:
    iso = isolated(local_cloud, tmp_path, ack_deadline=10)
    proxy = FaultProxy(local_cloud.gcs_url, seed=7).start()
    try:
        envs, expected = workload(dt.datetime.now(dt.UTC), 18)
        proxy.add(FaultRule("status:403", method="POST", match="/upload/", times=-1))  # permanent, for a while
        port = free_port()
        env = iso.env(STORAGE_EMULATOR_HOST=proxy.url)
        iso.start_replicator(
            *FAST, "--tier", "core", "--metrics-port", str(port), "--nack-delay", "0.5", "--gcs-deadline", "20", env=env
        )
        iso.publish("core", envs)
        wait_for(lambda: _metric(port, "logpipe_replicator_land_errors_total") >= 3, 60, what="permanent errors")
        assert iso.staged() == []  # nothing landed, nothing acked
        proxy.clear()
        proxy.add(
            FaultRule("status:503", times=-1, probability=0.2),
            FaultRule("status:429", times=-1, probability=0.1),
            FaultRule("reset", times=-1, probability=0.05),
            FaultRule("reset_after", method="POST", times=-1, probability=0.1),
        )
        check_exactly_once(iso, expected)
        assert _metric(port, "logpipe_replicator_retries_total") > 0
        assert _metric(port, "logpipe_replicator_objects_existing_total") > 0  # 412 after a lost response
        stats = proxy.stats()
        assert stats.get("reset_after", 0) > 0 and stats.get("status", 0) > 0
    finally:
        iso.stop_all()
        proxy.stop()
        time.sleep(0)


def test_sigterm_mid_stream_drains_then_exits_and_a_restart_finishes(local_cloud: Endpoints, tmp_path: Path) -> None:
    iso = isolated(local_cloud, tmp_path, ack_deadline=10)
    try:
        envs, expected = workload(dt.datetime.now(dt.UTC), 60)
        first = iso.start_replicator(*FAST, "--tier", "core", "--no-finalize")
        iso.publish("core", envs)
        wait_for(lambda: len(iso.staged()) >= 3, 60, what="some landing")
        first.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert first.wait(timeout=60) == 0, iso.logs_tail()
        assert time.monotonic() - started < 5 + 10  # drain timeout + thread joins
        assert "replicator stopped" in iso.logs[-1].read_text()
        iso.start_replicator(*FAST, "--tier", "core")
        check_exactly_once(iso, expected)
    finally:
        iso.stop_all()
