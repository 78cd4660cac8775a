"""Build the Google clients from ``ReplicatorConfig`` (entry points only; everything else gets them injected).

With an emulator host configured, Pub/Sub gets an insecure gRPC channel with a 64 MiB receive limit (the default
4 MiB refuses pull responses carrying several 1 MiB envelopes), and GCS gets anonymous credentials and the emulator
endpoint. Without emulators, the clients use Application Default Credentials.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from replicator.config import ReplicatorConfig
from replicator.gcs_upload import MultipartUploader
from replicator.retry import RetryPolicy
from replicator.store_gcs import GcsStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from google.cloud import pubsub_v1, storage

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def http_pool_size(cfg: ReplicatorConfig, tiers: Sequence[str] | None = None) -> int:
    """Connections the GCS client keeps: one per landing thread of every tier, plus the finalizer and spares.

    ``tiers`` are the tiers the process replicates as resolved from the catalog; ``cfg.tiers`` is empty when no
    ``--tier`` was given (meaning every tier), so it is only the fallback."""
    n = len(tiers) if tiers is not None else len(cfg.tiers)
    return max(10, cfg.threads * max(1, n) + 4)


def storage_client(cfg: ReplicatorConfig, tiers: Sequence[str] | None = None) -> storage.Client:
    """The GCS client, with an HTTP connection pool of ``http_pool_size(cfg, tiers)``.

    requests' default pool keeps 10 connections per host: with more landing threads than that, every upload past
    the 10th opens a new TCP connection and drops it afterwards ("Connection pool is full")."""
    from google.cloud import storage
    from requests.adapters import HTTPAdapter

    if cfg.storage_emulator_host:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        client = storage.Client(
            project=cfg.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=cfg.storage_emulator_host),
        )
    else:
        client = storage.Client(project=cfg.project)
    size = http_pool_size(cfg, tiers)
    # ``_http`` is the client's documented transport (a requests Session, created on first use); no I/O here.
    session = client._http
    for scheme in ("http://", "https://"):
        session.mount(scheme, HTTPAdapter(pool_connections=size, pool_maxsize=size))
    if not uses_request_environment(os.environ):
        # requests re-reads proxies, the CA bundle and ~/.netrc from the environment on EVERY request (0.4 ms of GIL
        # per upload). Without a proxy or NETRC, only the CA bundle matters: resolve it once, as requests would.
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.trust_env = False
    return client


def uses_request_environment(env: Mapping[str, str]) -> bool:
    """True when the environment sets something requests must resolve per request: a proxy or NETRC."""
    keys = {k.upper() for k, v in env.items() if v}
    return "NETRC" in keys or any(k.endswith("_PROXY") for k in keys)


def object_store(
    cfg: ReplicatorConfig, on_retry: Callable[[str], None] | None = None, *, tiers: Sequence[str] | None = None
) -> GcsStore:
    """The ``ObjectStore`` of the landing bucket, retrying transient errors for up to ``cfg.gcs_deadline`` seconds.

    ``tiers``: the tiers this process lands (sizes the connection pools, see ``http_pool_size``).

    Creates go through ``MultipartUploader`` (a connection per landing thread, the CA bundle requests would use),
    unless the environment sets a proxy or NETRC: only requests resolves those, so the library's upload is kept."""
    client = storage_client(cfg, tiers)
    retry = RetryPolicy(deadline=cfg.gcs_deadline)
    if uses_request_environment(os.environ) or getattr(client._http, "is_mtls", False):
        return GcsStore(client, cfg.bucket, retry, on_retry, library_upload=True)
    uploader = MultipartUploader(
        client._credentials,
        client._connection.API_BASE_URL,
        cfg.bucket,
        pool_size=http_pool_size(cfg, tiers),
        ca_certs=os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None,
    )
    return GcsStore(client, cfg.bucket, retry, on_retry, uploader=uploader)


def _channel(host: str) -> Any:
    import grpc

    return grpc.insecure_channel(host, options=GRPC_OPTIONS)


def subscriber(cfg: ReplicatorConfig) -> pubsub_v1.SubscriberClient:
    from google.cloud import pubsub_v1

    if cfg.pubsub_emulator_host:
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=_channel(cfg.pubsub_emulator_host)))
    return pubsub_v1.SubscriberClient()


def publisher(cfg: ReplicatorConfig) -> pubsub_v1.PublisherClient:
    from google.cloud import pubsub_v1

    if cfg.pubsub_emulator_host:
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=_channel(cfg.pubsub_emulator_host)))
    return pubsub_v1.PublisherClient()
