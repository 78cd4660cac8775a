"""``Incoming``: a ``PublishRequest`` as the server receives it, its bytes kept and parsed only when needed.

``parse_incoming`` is the gRPC request deserializer of the Ingest methods (``server.ingest_handlers``). The C fast
path (``service.frontend.fastpath``) reads the bytes directly; the Python path parses them (``request``) and takes
each event's original bytes (``raw_events``) so accepted events are framed without re-serializing them (docs/ingest.md,
"Lazy parsing").
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf.message import DecodeError

from service.contract import PublishRequest, ingest_pb2
from service.frontend.status import RequestError

PublishRequestEventsView = ingest_pb2.PublishRequestEventsView


class Incoming:
    """A request as the server receives it: its bytes, parsed only when needed (the C fast path reads the bytes
    directly; see ``service.frontend.fastpath``). Used by one handler thread at a time."""

    __slots__ = ("_request", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._request: PublishRequest | None = None

    @property
    def request(self) -> PublishRequest:
        """The parsed request. Raises ``RequestError`` (INTERNAL) when the bytes do not parse."""
        if self._request is None:
            try:
                self._request = PublishRequest.FromString(self.raw)
            except DecodeError as exc:
                raise RequestError(grpc.StatusCode.INTERNAL, f"request does not parse: {exc}") from None
        return self._request

    @property
    def raw_events(self) -> Sequence[bytes]:
        """Each event's bytes as they arrived (call after ``request``, which checks that the bytes parse)."""
        events: Sequence[bytes] = PublishRequestEventsView.FromString(self.raw).events
        return events


def parse_incoming(raw: bytes) -> Incoming:
    """The gRPC request deserializer: keeps the bytes; never raises (malformed bytes are answered INTERNAL)."""
    return Incoming(raw)
