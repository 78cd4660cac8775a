"""The GCS client keeps a connection per landing thread (otherwise uploads past the 10th reconnect every time)."""

from __future__ import annotations

import pytest

from replicator.clients import http_pool_size, storage_client, uses_request_environment
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


@pytest.mark.parametrize(
    ("env", "uses"),
    [
        ({"PATH": "/bin", "HOME": "/root", "NO_PROXY": ""}, False),
        ({"https_proxy": "http://proxy:3128"}, True),
        ({"HTTP_PROXY": "http://proxy:3128"}, True),
        ({"REQUESTS_CA_BUNDLE": "/etc/ca.pem"}, False),
        ({"NETRC": "/root/.netrc"}, True),
    ],
)
def test_the_environment_is_read_per_request_only_when_it_matters(env: dict[str, str], uses: bool) -> None:
    assert uses_request_environment(env) is uses


def test_the_ca_bundle_is_resolved_once_when_the_environment_is_not_read_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k in [k for k in __import__("os").environ if k.upper().endswith("_PROXY") or k.upper() == "NETRC"]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    cfg = ReplicatorConfig(project="p", bucket="bkt", storage_emulator_host="http://127.0.0.1:1")
    session = storage_client(cfg)._http
    assert session.trust_env is False and session.verify == "/etc/ssl/certs/ca-certificates.crt"


def test_object_store_uploads_directly_unless_a_proxy_or_netrc_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from replicator.clients import object_store

    for k in [k for k in __import__("os").environ if k.upper().endswith("_PROXY") or k.upper() == "NETRC"]:
        monkeypatch.delenv(k)
    cfg = ReplicatorConfig(project="p", bucket="bkt", threads=16, storage_emulator_host="http://127.0.0.1:1")
    direct = object_store(cfg)._uploader
    assert direct is not None
    assert direct.url == "http://127.0.0.1:1/upload/storage/v1/b/bkt/o?uploadType=multipart&ifGenerationMatch=0"
    assert direct._http.http.connection_pool_kw["maxsize"] == http_pool_size(cfg)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert object_store(cfg)._uploader is None


def test_pools_are_sized_from_the_resolved_tiers_when_no_tier_flag_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``--tier`` the config names no tier (meaning all of them): the catalog's tiers size the pools."""
    from replicator.clients import object_store

    for k in [k for k in __import__("os").environ if k.upper().endswith("_PROXY") or k.upper() == "NETRC"]:
        monkeypatch.delenv(k)
    cfg = ReplicatorConfig(project="p", bucket="bkt", threads=16, storage_emulator_host="http://127.0.0.1:1")
    assert cfg.tiers == ()
    tiers = ("core", "bulk")
    size = http_pool_size(cfg, tiers)
    assert size >= 16 * 2 + 1  # every landing thread of both tiers, and the finalizer
    store = object_store(cfg, tiers=tiers)
    assert store._uploader is not None
    assert store._uploader._http.http.connection_pool_kw["maxsize"] == size
    adapter = store._bucket.client._http.get_adapter("http://127.0.0.1:1/storage/v1/b")
    assert adapter._pool_maxsize == size  # type: ignore[attr-defined]
    assert http_pool_size(cfg) < size  # the config alone does not know the catalog's tiers
