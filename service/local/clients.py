"""Official Google clients pointed at one local stack, through explicit options rather than environment variables.

Why explicit: the clients also honour PUBSUB_EMULATOR_HOST / STORAGE_EMULATOR_HOST / BIGQUERY_EMULATOR_HOST, but those
are process-wide, and tests may run several stacks in one process. The helpers below ignore those variables:
  * Pub/Sub: an insecure gRPC channel to ``pubsub_host`` handed to the GAPIC transport (no credentials needed).
  * GCS: ``client_options.api_endpoint = gcs_url`` with anonymous credentials.
  * BigQuery: ``client_options.api_endpoint = bigquery_url`` with anonymous credentials.
Production code should take these clients as injected dependencies; only entry points build them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud.bigquery import Client as BigQueryClient
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
    from google.cloud.storage import Client as StorageClient

    from service.local.endpoints import Endpoints

# The emulator happily sends pull responses over gRPC's default 4 MiB receive limit when messages are large.
GRPC_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
)


def _channel(host: str) -> Any:
    import grpc

    return grpc.insecure_channel(host, options=list(GRPC_OPTIONS))


def pubsub_publisher(endpoints: Endpoints, **kwargs: Any) -> PublisherClient:
    """A ``PublisherClient`` for the stack's emulator. ``kwargs`` go to the client (batch_settings, ...)."""
    from google.cloud.pubsub_v1 import PublisherClient
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    transport = PublisherGrpcTransport(channel=_channel(endpoints.pubsub_host))
    return PublisherClient(transport=transport, **kwargs)


def pubsub_subscriber(endpoints: Endpoints, **kwargs: Any) -> SubscriberClient:
    """A ``SubscriberClient`` for the stack's emulator (pull, streaming pull, ack, nack, admin calls)."""
    from google.cloud.pubsub_v1 import SubscriberClient
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    transport = SubscriberGrpcTransport(channel=_channel(endpoints.pubsub_host))
    return SubscriberClient(transport=transport, **kwargs)


def storage_client(endpoints: Endpoints) -> StorageClient:
    """A GCS client for the stack's fake-gcs-server."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client as StorageClient

    return StorageClient(
        project=endpoints.project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoints.gcs_url),
    )


def bigquery_client(endpoints: Endpoints) -> BigQueryClient:
    """A BigQuery client for the stack's local-bigquery (REST)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.bigquery import Client as BigQueryClient

    return BigQueryClient(
        project=endpoints.project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=endpoints.bigquery_url),
    )
