"""TLS end to end with the SDK, the refusal to serve plaintext remotely, and metrics counting outcomes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from service.client import ClientOptions, IngestClient, RetryPolicy
from tests.unit.frontend_support import event, published_event_ids, request, running_frontend

pytestmark = pytest.mark.unit


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_round_trip_and_plaintext_refused(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with running_frontend(tmp_path, tls_cert=cert, tls_key=key) as (fe, _stub, pub):
        opts = ClientOptions(max_latency_s=0.01, rpc_timeout_s=2, retry=RetryPolicy(deadline_s=1))
        with IngestClient(f"127.0.0.1:{fe.port}", tls=True, root_certificates=cert.read_bytes(), options=opts) as c:
            eid = c.send("app_log", {"secure": True})
            assert c.flush(timeout=20).accepted == 1
        assert published_event_ids(pub) == [eid]
        with IngestClient(f"127.0.0.1:{fe.port}", options=opts) as plain:
            plain.send("app_log", {"secure": False})
            assert plain.flush(timeout=20).failed  # a plaintext client cannot talk to a TLS server


def test_serve_refuses_plaintext_on_a_remote_address(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0", "--spool-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "allow-insecure-remote" in res.stderr


def test_metrics_count_outcomes(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (fe, stub, _pub):
        stub.Publish(request(event(), event(), event(payload=b"{")), timeout=10)
        reg = fe.metrics.registry
        assert reg.get_sample_value("logpipe_events_accepted_total", {"category": "app_log"}) == 2
        assert reg.get_sample_value("logpipe_events_rejected_total", {"reason": "INVALID_JSON"}) == 1
        assert reg.get_sample_value("logpipe_requests_total", {"method": "Publish", "code": "OK"}) == 1
        assert reg.get_sample_value("logpipe_envelope_events_count") >= 1


def test_metrics_endpoint_serves_prometheus_text(tmp_path: Path) -> None:
    import socket

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with running_frontend(tmp_path, metrics_port=port) as (_fe, stub, _pub):
        stub.Publish(request(event()), timeout=10)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'logpipe_events_accepted_total{category="app_log"} 1.0' in text
        assert "logpipe_spool_depth" in text and "logpipe_inflight_bytes" in text
