"""G4 gap: under a backlog behind a slow GCS, a replicator worker holds at most ``--max-messages`` messages at once
(the ``logpipe_replicator_in_flight_messages`` gauge), although it has more landing threads than that; and the backlog
drains once GCS is fast again. Without flow control the worker would run one message per thread (16 here)."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path

import pytest
import requests
from replicator_harness import isolated, wait_for

from replicator.synth import make_envelope
from service.local.endpoints import Endpoints
from service.local.procs import free_port
from tests.faults.http_proxy import FaultProxy, FaultRule

pytestmark = pytest.mark.integration

MAX_MESSAGES = 3


def _in_flight(port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    m = re.search(r"^logpipe_replicator_in_flight_messages (\S+)$", text, re.M)
    assert m, text
    return float(m.group(1))


def test_worker_holds_at_most_max_messages_under_a_backlog(local_cloud: Endpoints, tmp_path: Path) -> None:
    iso = isolated(local_cloud, tmp_path, ack_deadline=30)
    proxy = FaultProxy(local_cloud.gcs_url, seed=1).start()
    try:
        hour = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
        envs = [make_envelope("ads_click", [f"f-{k}-{i}" for i in range(5)], hour) for k in range(40)]
        proxy.add(FaultRule("delay:1.0", method="POST", times=-1))  # every upload is slow: a backlog builds
        port = free_port()
        iso.start_replicator(
            "--tier", "core", "--no-finalize", "--max-messages", str(MAX_MESSAGES), "--threads", "16",
            "--metrics-port", str(port), env=iso.env(STORAGE_EMULATOR_HOST=proxy.url),
        )  # fmt: skip
        iso.publish("core", envs)
        samples: list[float] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            samples.append(_in_flight(port))
            time.sleep(0.2)
        assert max(samples) >= 1, "the worker never held a message: the test measured nothing"
        assert max(samples) <= MAX_MESSAGES, f"held {max(samples)} > --max-messages {MAX_MESSAGES}"
        assert len(iso.staged()) < len(envs), "the backlog was gone before it could be measured"
        proxy.clear()
        try:
            wait_for(lambda: len(iso.staged()) == len(envs), 90, 0.5, "the backlog drained")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{iso.logs_tail()}") from None
    finally:
        iso.stop_all()
        proxy.stop()
