"""G1/G2 gap: Pub/Sub unreachable from a running replicator for a while (a TCP proxy in front of the emulator that
first refuses, then black-holes). The replicator must survive the outage without acking anything it has not landed,
resume on its own when Pub/Sub comes back, and commit every published event exactly once. Real process, local cloud.
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from pathlib import Path

import pytest
from replicator_harness import isolated, wait_for

from replicator.synth import make_envelope
from service.local.endpoints import Endpoints
from tests.faults.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration

FAST = (
    "--lease-extension-seconds",
    "10",
    "--lateness-seconds",
    "0",
    "--finalize-interval",
    "1",
    "--drain-timeout",
    "5",
    "--max-messages",
    "4",
)


def test_replicator_survives_a_pubsub_outage_and_resumes(local_cloud: Endpoints, tmp_path: Path) -> None:
    iso = isolated(local_cloud, tmp_path, ack_deadline=10)
    host, port = local_cloud.pubsub_host.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        try:
            hour = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
            before = [make_envelope("ads_click", [f"a-{k}-{i}" for i in range(10)], hour) for k in range(6)]
            during = [make_envelope("ads_click", [f"b-{k}-{i}" for i in range(10)], hour) for k in range(6)]
            expected = {f"{p}-{k}-{i}" for p in "ab" for k in range(6) for i in range(10)}
            rep = iso.start_replicator(*FAST, "--tier", "core", env=iso.env(PUBSUB_EMULATOR_HOST=proxy.address))
            iso.publish("core", before)  # the test publishes directly to the emulator, not through the proxy
            wait_for(lambda: len(iso.staged()) >= 1, 60, what="some landing before the outage")
            proxy.set_mode("refuse")
            iso.publish("core", during)
            time.sleep(10)
            proxy.set_mode("blackhole")
            time.sleep(10)
            assert rep.poll() is None, "the replicator died during the Pub/Sub outage:\n" + iso.logs_tail()
            staged = "\n".join(iso.staged())
            assert not [e for e in during if e.envelope_id in staged], "the outage did not cut the replicator off"
            reconnects = proxy.accepted
            proxy.set_mode("pass")
            try:
                wait_for(lambda: set(iso.committed()) == expected, 150, 0.5, "every event committed after the outage")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{iso.logs_tail()}") from None
            assert proxy.accepted > reconnects, "the replicator did not reconnect through the proxy"
            counts = iso.committed()
            assert {k: v for k, v in counts.items() if v != 1} == {}
            rep.send_signal(signal.SIGTERM)
            assert rep.wait(timeout=60) == 0, iso.logs_tail()
        finally:
            iso.stop_all()
