"""The logpipe SDK: ``IngestClient`` (blocking) and ``AsyncIngestClient`` (asyncio).

Example::

    from service.client import IngestClient

    with IngestClient("127.0.0.1:50051") as client:
        client.send("app_log", {"level": "info", "msg": "hello"})
        result = client.flush()
        assert result.ok, result.rejected + result.failed
"""

from service.client._options import ClientOptions
from service.client.aio import AsyncIngestClient
from service.client.errors import BufferFull, ClientClosed, ClientError, InvalidEvent
from service.client.ids import uuid7, uuid7_str
from service.client.results import Failure, FlushResult, Rejection
from service.client.retry import RETRYABLE, RetryPolicy
from service.client.sync import IngestClient

__all__ = [
    "RETRYABLE",
    "AsyncIngestClient",
    "BufferFull",
    "ClientClosed",
    "ClientError",
    "ClientOptions",
    "Failure",
    "FlushResult",
    "IngestClient",
    "InvalidEvent",
    "Rejection",
    "RetryPolicy",
    "uuid7",
    "uuid7_str",
]
