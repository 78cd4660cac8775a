"""Pub/Sub outage + SIGKILL of a real ``logpipe serve``: every acked event reaches Pub/Sub (G1).

Story: the front-end reaches the emulator through a TCP proxy. Healthy traffic; then the proxy refuses connections
(outage) and the front-end acks from its spool; more traffic is in flight when the front-end is SIGKILLed; it restarts
on the same port and spool, the client reconnects, Pub/Sub comes back, the spool replays. Then every event id the
client saw acked must be in some envelope pulled from Pub/Sub (duplicate envelope ids are allowed: the replicator
deduplicates on envelope_id).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.catalog import load_catalog
from service.client import ClientOptions, IngestClient, RetryPolicy
from service.local.endpoints import Endpoints
from tests.faults.tcp_proxy import TcpProxy
from tests.integration.frontend_pubsub import tap

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """One ``logpipe serve`` child process, stopped by PID."""

    def __init__(self, env: dict[str, str], port: int, spool: Path, log: Path) -> None:
        self.port_file = spool.parent / f"port-{port}"
        self.port_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "service.cli", "serve", "--port", str(port), "--port-file", str(self.port_file),
                "--spool-dir", str(spool), "--set", "publish_timeout_s=2", "--set", "replay_interval_s=0.2",
                "--set", "envelope_max_latency_ms=20"]  # fmt: skip
        self.log = open(log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.time() + 30
        while not self.port_file.exists():
            assert self.proc.poll() is None, f"logpipe serve exited: {log.read_text()[-2000:]}"
            assert time.time() < deadline, "logpipe serve did not become ready"
            time.sleep(0.05)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def terminate(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        code = self.proc.wait(60)
        self.log.close()
        return code


@pytest.fixture
def serve_env(local_cloud: Endpoints) -> Iterator[tuple[dict[str, str], TcpProxy]]:
    host, port = local_cloud.pubsub_host.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        env = {**os.environ, **local_cloud.env(), "PUBSUB_EMULATOR_HOST": proxy.address, "LOGPIPE_LOG_LEVEL": "INFO"}
        yield env, proxy


def test_acked_events_survive_outage_and_sigkill(
    local_cloud: Endpoints, serve_env: tuple[dict[str, str], TcpProxy], tmp_path: Path
) -> None:
    env, proxy = serve_env
    catalog = load_catalog(local_cloud.catalog)
    spool = tmp_path / "spool"
    port = free_port()
    log = tmp_path / "serve.log"
    acked: set[str] = set()
    opts = ClientOptions(max_latency_s=0.01, max_batch_events=50, rpc_timeout_s=5,
                         retry=RetryPolicy(deadline_s=60, maximum_s=0.5))  # fmt: skip

    def send_and_collect(client: IngestClient, n: int, tag: str) -> None:
        ids = {client.send("app_log", {"phase": tag, "i": i}) for i in range(n)}
        result = client.flush(timeout=120)
        assert not result.rejected
        acked.update(ids - {f.event_id for f in result.failed})

    with tap(local_cloud, catalog.topic("bulk")) as bulk:
        fe = Serve(env, port, spool, log)
        try:
            client = IngestClient(f"127.0.0.1:{port}", options=opts)
            send_and_collect(client, 200, "healthy")

            proxy.set_mode("refuse")  # Pub/Sub unreachable
            send_and_collect(client, 300, "outage")
            assert list(spool.glob("*.env")), "acks during the outage must come from the spool"

            # In-flight traffic when the front-end dies. Events acked before the kill are recorded by the client.
            in_flight = threading.Thread(target=send_and_collect, args=(client, 2000, "killed"), daemon=True)
            in_flight.start()
            time.sleep(0.5)
            fe.kill()
            assert list(spool.glob("*.env")), "the spool survives SIGKILL"

            fe = Serve(env, port, spool, log)  # restart: same port and spool; client retries reconnect
            in_flight.join(120)
            assert not in_flight.is_alive()
            send_and_collect(client, 100, "after-restart")

            proxy.set_mode("pass")  # Pub/Sub is back: the spool replays
            deadline = time.time() + 60
            while list(spool.glob("*.env")) and time.time() < deadline:
                time.sleep(0.2)
            assert not list(spool.glob("*.env")), "spool did not drain after Pub/Sub came back"
            client.close()
        finally:
            code = fe.terminate()
        assert code == 0, log.read_text()[-3000:]
        pulled = bulk.pull(until=len(acked), timeout_s=60)

    missing = acked - set(pulled.event_ids)
    assert not missing, f"{len(missing)} acked events never reached Pub/Sub"
    assert len(acked) >= 200 + 300 + 100
    # Duplicates can only be whole re-published envelopes, never a second copy under another envelope id.
    by_envelope: dict[str, list[str]] = {}
    for env_ in pulled.envelopes:
        ids = [e.event_id for e in env_.events]
        assert by_envelope.setdefault(env_.envelope_id, ids) == ids
