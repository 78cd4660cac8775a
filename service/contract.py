"""The generated protobuf/gRPC modules for ``proto/logpipe/v1``, under stable names.

Import from here rather than from ``service._gen`` so regenerating never changes user imports.
"""

from service._gen.logpipe.v1 import event_pb2, ingest_pb2, ingest_pb2_grpc

Event = event_pb2.Event
Envelope = event_pb2.Envelope
PublishRequest = ingest_pb2.PublishRequest
PublishResponse = ingest_pb2.PublishResponse
EventStatus = ingest_pb2.EventStatus
StatusCode = ingest_pb2.StatusCode

__all__ = [
    "Envelope",
    "Event",
    "EventStatus",
    "PublishRequest",
    "PublishResponse",
    "StatusCode",
    "event_pb2",
    "ingest_pb2",
    "ingest_pb2_grpc",
]
