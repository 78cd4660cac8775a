"""One contract suite for ``ObjectStore``: the in-memory fake and ``GcsStore`` on fake-gcs-server must agree."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials

from replicator.claims import PartitionClaims
from replicator.errors import ObjectNotFound, StoreError
from replicator.gcs_upload import MultipartUploader
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.retry import RetryPolicy
from replicator.store import MemoryStore, ObjectStore, crc32c_b64
from replicator.store_gcs import GcsStore
from service.local import clients, provision
from service.local.endpoints import Endpoints

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "gcs", "gcs-library-upload"])
def store(request: pytest.FixtureRequest) -> Iterator[ObjectStore]:
    """``gcs`` creates through ``MultipartUploader`` (the default); ``gcs-library-upload`` through google-cloud-storage
    (kept for proxy/NETRC environments)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    endpoints: Endpoints = request.getfixturevalue("local_cloud")
    ep = dataclasses.replace(endpoints, bucket=f"contract-{uuid.uuid4().hex[:8]}")
    provision.provision_bucket(ep, None)  # type: ignore[arg-type]
    library = request.param == "gcs-library-upload"
    store = GcsStore(clients.storage_client(ep), ep.bucket, RetryPolicy(deadline=10), library_upload=library)
    assert (store._uploader is None) is library
    yield store


def test_create_if_absent_creates_once_and_keeps_the_first(store: ObjectStore) -> None:
    first = store.create_if_absent("a/b/one", b"first", {"k": "v"})
    second = store.create_if_absent("a/b/one", b"second!", {"k": "other"})
    assert first.created and not second.created
    assert (second.crc32c, second.size) == (crc32c_b64(b"first"), 5)
    assert store.read("a/b/one") == b"first"
    info = store.stat("a/b/one")
    assert info is not None and info.metadata == {"k": "v"} and info.crc32c == crc32c_b64(b"first")


def test_large_single_request_upload_keeps_precondition(store: ObjectStore) -> None:
    """9 MiB is above google-cloud-storage's default multipart limit: a resumable upload would overwrite here."""
    big1 = b"1" * (9 * 1024 * 1024)
    big2 = b"2" * (9 * 1024 * 1024)
    assert store.create_if_absent("big", big1).created
    assert not store.create_if_absent("big", big2).created
    assert store.read("big")[:1] == b"1"


def test_list_is_prefix_filtered_and_sorted(store: ObjectStore) -> None:
    for name in ["p/2", "p/1", "p/10", "q/1"]:
        store.create_if_absent(name, name.encode())
    assert [i.name for i in store.list("p/")] == ["p/1", "p/10", "p/2"]
    assert [i.size for i in store.list("q/")] == [3]
    assert list(store.list("nothing/")) == []


def test_list_spanning_many_pages_is_complete_and_sorted(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("replicator.store_gcs.LIST_PAGE_SIZE", 3)  # GcsStore: 4 pages (memory store: no pages)
    names = [f"pages/{i:02d}" for i in range(11)]
    for name in reversed(names):
        store.create_if_absent(name, b"x")
    assert [i.name for i in store.list("pages/")] == names


def test_list_from_a_start_offset_skips_the_names_before_it(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fresh path lists an hour from a UUIDv7 prefix (replicator/bigquery/fresh.py); over several pages here."""
    monkeypatch.setattr("replicator.store_gcs.LIST_PAGE_SIZE", 2)
    names = ["h/01a2-7", "h/01a3-1", "h/01a3-2", "h/01a4-0", "h/01a4-0a", "h/01b0", "i/01a5"]
    for name in reversed(names):
        store.create_if_absent(name, b"x")
    assert [i.name for i in store.list("h/", start_offset="h/01a3")] == names[1:6]
    assert [i.name for i in store.list("h/", start_offset="h/01a4-0")] == names[3:6], "inclusive"
    assert [i.name for i in store.list("h/", start_offset="")] == names[:6]
    assert [i.name for i in store.list("h/", start_offset="h/01a")] == names[:6]
    assert list(store.list("h/", start_offset="h/02")) == []
    assert list(store.list("h/", start_offset="i/")) == [], "still within the prefix"


def test_read_and_stat_of_missing_object(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.read("missing")
    assert store.stat("missing") is None


def test_delete_is_idempotent(store: ObjectStore) -> None:
    store.create_if_absent("d", b"x")
    store.delete("d")
    store.delete("d")
    assert store.stat("d") is None
    assert store.create_if_absent("d", b"y").created


def test_permanent_error_is_not_retried(local_cloud: Endpoints) -> None:
    missing_bucket = GcsStore(clients.storage_client(local_cloud), "no-such-bucket-xyz", RetryPolicy(deadline=30))
    with pytest.raises(StoreError) as err:
        missing_bucket.create_if_absent("x", b"y")
    assert not err.value.transient


def test_objects_above_the_single_request_limit_keep_the_library_path(
    local_cloud: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finalized data files above ``SINGLE_REQUEST_LIMIT`` are uploaded as before (google-cloud-storage)."""
    ep = dataclasses.replace(local_cloud, bucket=f"contract-{uuid.uuid4().hex[:8]}")
    provision.provision_bucket(ep, None)  # type: ignore[arg-type]
    store = GcsStore(clients.storage_client(ep), ep.bucket, RetryPolicy(deadline=10))
    direct: list[str] = []
    real = store._uploader.create  # type: ignore[union-attr]
    monkeypatch.setattr(store._uploader, "create", lambda name, *a: direct.append(name) or real(name, *a))
    monkeypatch.setattr("replicator.store_gcs.SINGLE_REQUEST_LIMIT", 10)
    assert store.create_if_absent("small", b"0123456789").created
    assert store.create_if_absent("large", b"0123456789!").created
    assert not store.create_if_absent("large", b"other bytes").created
    assert direct == ["small"] and store.read("large") == b"0123456789!"


def test_upload_connections_are_opened_up_front_and_reused(local_cloud: Endpoints) -> None:
    """``open_connections(n)`` leaves n keep-alive connections in the upload pool; later creates reuse them, so the
    replicator's open files do not grow on its first bursts (the soak judges open files)."""
    ep = dataclasses.replace(local_cloud, bucket=f"contract-{uuid.uuid4().hex[:8]}")
    provision.provision_bucket(ep, None)  # type: ignore[arg-type]
    uploader = MultipartUploader(AnonymousCredentials(), local_cloud.gcs_url, ep.bucket, pool_size=6)  # type: ignore[no-untyped-call]
    store = GcsStore(clients.storage_client(ep), ep.bucket, RetryPolicy(deadline=10), uploader=uploader)
    assert store.open_connections(6) == 6
    pool = uploader._http.http._pool  # the upload host's urllib3 pool
    assert pool.num_connections == 6
    for i in range(12):
        assert store.create_if_absent(f"o{i}", b"x").created
    assert pool.num_connections == 6  # reused, none opened
    assert GcsStore(clients.storage_client(ep), ep.bucket, library_upload=True).open_connections(4) == 0
    missing = MultipartUploader(AnonymousCredentials(), local_cloud.gcs_url, "no-such-bucket-xyz", pool_size=2)  # type: ignore[no-untyped-call]
    assert missing.open_connections(2) == 0  # a failed warm-up is reported, never raised


def test_finalization_claims_work_on_the_store(store: ObjectStore) -> None:
    """``replicator.claims`` reads its holder and expiry from the listing's custom metadata and tells its own create
    from a peer's by ``stat``'s metadata: both must come back from fake-gcs-server as from the fake."""
    now = [dt.datetime(2026, 11, 26, 15, tzinfo=dt.UTC)]
    ttl = dt.timedelta(seconds=60)
    a = PartitionClaims(store, "host-a:1", ttl, Metrics(), lambda: now[0])
    b = PartitionClaims(store, "host-b:2", ttl, Metrics(), lambda: now[0])
    p = Partition("ads_click", dt.datetime(2026, 11, 26, 11, tzinfo=dt.UTC))
    mine = a.acquire(p)
    assert mine is not None and b.acquire(p) is None
    now[0] += ttl / 2
    mine.renew_if_due()
    assert [i.name for i in store.list("claims/")] == ["claims/ads_click/2026/11/26/11/e00000002"]
    now[0] += ttl * 0.9  # past the first expiry, not the renewed one
    assert b.acquire(p) is None
    now[0] += ttl
    theirs = b.acquire(p)
    assert theirs is not None and theirs.epoch == 3
    mine.release()  # a stale holder's release leaves the taker's claim
    assert [i.name for i in store.list("claims/")] == [theirs.name]
    theirs.release()
    assert list(store.list("claims/")) == []
