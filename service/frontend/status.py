"""``RequestError``: a request-level failure of the Ingest methods, answered as a gRPC status.

Per-event problems are not errors: they are statuses in the response (``service.frontend.responses``). The request
level codes and when the servicer uses each are in ``service.frontend.servicer``'s contract; RESOURCE_EXHAUSTED carries
``google.rpc.RetryInfo`` with the delay the client should wait.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status


class RequestError(Exception):
    """A request-level failure, answered as a gRPC status (with RetryInfo when ``retry_after_s`` is set)."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    def abort(self, context: grpc.ServicerContext) -> None:
        """End the RPC with this status. Raises (as ``context.abort`` does)."""
        if self.retry_after_s is None:
            context.abort(self.code, self.message)
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_s * 1e9))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status = status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])
        context.abort_with_status(rpc_status.to_status(status))
