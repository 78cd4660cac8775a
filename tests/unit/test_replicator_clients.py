"""The GCS client keeps a connection per landing thread (otherwise uploads past the 10th reconnect every time)."""

from __future__ import annotations

import pytest

from replicator.clients import http_pool_size, storage_client
from replicator.config import ReplicatorConfig

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("threads", "tiers"), [(8, ("core",)), (32, ("core",)), (16, ("core", "bulk"))])
def test_connection_pool_covers_every_landing_thread(threads: int, tiers: tuple[str, ...]) -> None:
    cfg = ReplicatorConfig(
        project="p", bucket="bkt", threads=threads, tiers=tiers, storage_emulator_host="http://127.0.0.1:1"
    )
    adapter = storage_client(cfg)._http.get_adapter("http://127.0.0.1:1/storage/v1/b")
    assert http_pool_size(cfg) >= threads * len(tiers)
    assert adapter._pool_maxsize == http_pool_size(cfg)  # type: ignore[attr-defined]
