"""GCS faults through the fault-injecting proxy: bounded retries, 412 after a lost response, permanent errors."""

from __future__ import annotations

import dataclasses
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from replicator.errors import StoreError
from replicator.retry import RetryPolicy
from replicator.store_gcs import GcsStore
from service.local import clients, provision
from service.local.endpoints import Endpoints

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))
from http_proxy import FaultProxy, FaultRule

pytestmark = pytest.mark.integration


@pytest.fixture(params=["direct-upload", "library-upload"])
def proxied(local_cloud: Endpoints, request: pytest.FixtureRequest) -> Iterator[tuple[FaultProxy, GcsStore, list[str]]]:
    """Both create paths of ``GcsStore``: ``MultipartUploader`` (urllib3 errors) and google-cloud-storage (requests)."""
    proxy = FaultProxy(local_cloud.gcs_url).start()
    ep = dataclasses.replace(local_cloud, bucket=f"faults-{uuid.uuid4().hex[:8]}")
    provision.provision_bucket(ep, None)  # type: ignore[arg-type]
    retries: list[str] = []
    store = GcsStore(
        clients.storage_client(dataclasses.replace(ep, gcs_url=proxy.url)),
        ep.bucket,
        RetryPolicy(deadline=8, initial=0.05, max_backoff=0.5),
        on_retry=retries.append,
        timeout=(2.0, 1.0),
        library_upload=request.param == "library-upload",
    )
    try:
        yield proxy, store, retries
    finally:
        proxy.stop()


@pytest.mark.parametrize("action", ["status:429", "status:500", "status:503", "reset", "delay:1.5"])
def test_transient_errors_are_retried_until_success(
    proxied: tuple[FaultProxy, GcsStore, list[str]], action: str
) -> None:
    proxy, store, retries = proxied
    proxy.add(FaultRule(action, method="POST", match="/upload/", times=3))
    res = store.create_if_absent("obj", b"data")
    # A delayed request still reaches GCS after the client gave up, so the retry may find the object: both are fine.
    assert res.created or action.startswith("delay")
    assert res.crc32c == store.stat("obj").crc32c  # type: ignore[union-attr]
    assert len(retries) == 3
    assert store.read("obj") == b"data"


def test_lost_response_then_retry_answers_exists_with_our_bytes(
    proxied: tuple[FaultProxy, GcsStore, list[str]],
) -> None:
    proxy, store, retries = proxied
    proxy.add(FaultRule("reset_after", method="POST", match="/upload/", times=1))
    res = store.create_if_absent("obj", b"payload")
    assert not res.created  # the first attempt created it; the retry saw 412
    assert retries == ["create"] and store.read("obj") == b"payload"


def test_persistent_transient_error_gives_up_within_the_deadline(
    proxied: tuple[FaultProxy, GcsStore, list[str]],
) -> None:
    proxy, store, _ = proxied
    proxy.add(FaultRule("status:503", times=-1))
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        store.create_if_absent("obj", b"x")
    assert err.value.transient
    assert 7 <= time.monotonic() - started < 15


def test_permanent_error_is_raised_at_once(proxied: tuple[FaultProxy, GcsStore, list[str]]) -> None:
    proxy, store, retries = proxied
    proxy.add(FaultRule("status:403", times=-1))
    with pytest.raises(StoreError) as err:
        store.create_if_absent("obj", b"x")
    assert not err.value.transient and retries == []
