"""The front-end on the Pub/Sub emulator: envelopes arrive decodable, complete, per (category, hour), once per ack."""

from __future__ import annotations

import datetime as dt
import socket
import time
from pathlib import Path

import pytest

from service.catalog import load_catalog
from service.client import ClientOptions, IngestClient
from service.envelope import EncodedEnvelope
from service.frontend.auth import Authenticator
from service.frontend.config import FrontendConfig
from service.frontend.publisher import PubsubPublisher, make_pubsub_client
from service.frontend.server import Frontend
from service.local.endpoints import Endpoints
from tests.integration.frontend_pubsub import tap

pytestmark = pytest.mark.integration


def _frontend(endpoints: Endpoints, tmp_path: Path, **kw: object) -> Frontend:
    cfg = FrontendConfig(port=0, spool_dir=tmp_path / "spool", project=endpoints.project,
                         pubsub_emulator_host=endpoints.pubsub_host, envelope_max_latency_ms=20, **kw)  # fmt: skip
    catalog = load_catalog(endpoints.catalog)
    publisher = PubsubPublisher(make_pubsub_client(endpoints.pubsub_host), endpoints.project, cfg.publish_timeout_s)
    return Frontend(cfg, catalog, publisher, Authenticator(None))


def test_acked_events_arrive_in_envelopes(local_cloud: Endpoints, tmp_path: Path) -> None:
    catalog = load_catalog(local_cloud.catalog)
    fe = _frontend(local_cloud, tmp_path)
    port = fe.start()
    hour = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    try:
        with tap(local_cloud, catalog.topic("bulk")) as bulk, tap(local_cloud, catalog.topic("core")) as core:
            with IngestClient(f"127.0.0.1:{port}", options=ClientOptions(max_latency_s=0.01)) as client:
                sent = {}
                for i in range(300):
                    when = hour - dt.timedelta(seconds=1) if i % 3 == 0 else hour + dt.timedelta(seconds=i)
                    eid = client.send("app_log", {"level": "info", "i": i}, event_time=when, attributes={"i": str(i)})
                    sent[eid] = (i, when)
                ad = client.send("ads_click", {"campaign_id": "c1"})
                bad = client.send("app_log", "{broken")
                result = client.flush(timeout=30)
            assert result.accepted == 301
            assert [r.event_id for r in result.rejected] == [bad]
            pulled = bulk.pull(until=300)
            assert sorted(pulled.event_ids) == sorted(sent)  # every acked event, and only those
            for env, attrs in zip(pulled.envelopes, pulled.attributes, strict=True):
                assert attrs["category"] == env.category == "app_log"
                assert int(attrs["event_count"]) == len(env.events)
                hours = {e.event_time.ToDatetime(dt.UTC).replace(minute=0, second=0, microsecond=0)
                         for e in env.events}  # fmt: skip
                assert len(hours) == 1  # never spans two hourly partitions
                for e in env.events:
                    i, when = sent[e.event_id]
                    assert e.payload == f'{{"level":"info","i":{i}}}'.encode()
                    assert dict(e.attributes) == {"i": str(i)} and e.client_id == "anonymous"
                    assert e.event_time.ToDatetime(dt.UTC) == when and e.ingest_time.seconds > 0
            assert len(set(pulled.envelope_ids)) == len(pulled.envelope_ids)
            assert core.pull(until=1).event_ids == [ad]
    finally:
        fe.shutdown(grace_s=5)


def test_real_publisher_future_contract(local_cloud: Endpoints) -> None:
    """The adapter's future resolves to a message id, or fails within its bound when Pub/Sub is unreachable."""
    catalog = load_catalog(local_cloud.catalog)
    env = EncodedEnvelope("e-1", "app_log", b"x", {"envelope_id": "e-1"}, 1)
    ok = PubsubPublisher(make_pubsub_client(local_cloud.pubsub_host), local_cloud.project, 5.0)
    assert isinstance(ok.publish(catalog.topic("bulk"), env).result(timeout=10), str)
    ok.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    down = PubsubPublisher(make_pubsub_client(dead), local_cloud.project, 1.0)
    t0 = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - the client raises several transport error types
        down.publish(catalog.topic("bulk"), env).result(timeout=30)
    assert time.monotonic() - t0 < 15
    down.close()
