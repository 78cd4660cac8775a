"""``IngestServicer``: the gRPC methods ``Publish`` and ``PublishStream`` over validator, packer and sink.

Contract (also in proto/logpipe/v1/ingest.proto):
  * A response carries one status per event, in request order (only the rejected ones when the request set
    ``omit_accepted_statuses``); accepted events are durable when it is sent.
  * Request-level problems are gRPC errors: UNAUTHENTICATED (no or bad token), PERMISSION_DENIED (a configured category
    the client may not write; the whole request is refused), INVALID_ARGUMENT (too many events), RESOURCE_EXHAUSTED
    with ``google.rpc.RetryInfo`` (in-flight bytes or spool full), UNAVAILABLE (shutting down, or not durable).
  * ``PublishStream`` answers each request with its ``sequence``, possibly out of order, with at most
    ``stream_window`` requests unanswered (it stops reading past that: HTTP/2 flow control pushes back). A
    request-level error ends the stream with that status; the client re-sends the unanswered requests.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from service.catalog import Catalog
from service.contract import PublishRequest, PublishResponse, StatusCode, ingest_pb2, ingest_pb2_grpc
from service.frontend.auth import Authenticator, Identity
from service.frontend.errors import AuthError, Backpressure
from service.frontend.flow import InflightBytes
from service.frontend.metrics import Metrics
from service.frontend.packer import EVENT_OVERHEAD, Packer, Ticket
from service.frontend.validate import Checked, Validator

log = logging.getLogger(__name__)
_ACCEPTED = StatusCode.ACCEPTED
_REASONS = {v: k for k, v in StatusCode.items()}
_END = object()
PublishRequestEventsView = ingest_pb2.PublishRequestEventsView


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


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as the server receives it: parsed, plus each event's original bytes (for packing)."""

    request: PublishRequest
    raw_events: Sequence[bytes]


def parse_incoming(raw: bytes) -> Incoming:
    """The gRPC request deserializer. Raises ``DecodeError`` on malformed bytes (gRPC answers INTERNAL)."""
    return Incoming(PublishRequest.FromString(raw), PublishRequestEventsView.FromString(raw).events)


def _unwrap(request: PublishRequest | Incoming) -> tuple[PublishRequest, Sequence[bytes] | None]:
    if isinstance(request, Incoming):
        return request.request, request.raw_events
    return request, None


@dataclass(slots=True)
class _Admitted:
    request: PublishRequest
    checked: Checked
    nbytes: int
    ticket: Ticket | None


class IngestServicer(ingest_pb2_grpc.IngestServicer):  # type: ignore[misc]
    """See the module contract. All collaborators are injected; no I/O in the constructor."""

    def __init__(
        self,
        catalog: Catalog,
        validator: Validator,
        packer: Packer,
        flow: InflightBytes,
        auth: Authenticator,
        metrics: Metrics,
        *,
        max_events_per_request: int,
        retry_after_s: float,
        ack_timeout_s: float,
        stream_window: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._configured = frozenset(c.name for c in catalog.categories)
        self._validator = validator
        self._packer = packer
        self._flow = flow
        self._auth = auth
        self._metrics = metrics
        self._max_events = max_events_per_request
        self._retry_after = retry_after_s
        self._ack_timeout = ack_timeout_s
        self._window = stream_window
        self._clock = clock
        self._closing = threading.Event()

    def close_intake(self) -> None:
        """Refuse new requests from now on (UNAVAILABLE); requests already admitted complete normally."""
        self._closing.set()

    # --- gRPC methods --------------------------------------------------------------------------------------------
    def Publish(self, request: PublishRequest | Incoming, context: grpc.ServicerContext) -> PublishResponse:
        try:
            identity = self._authenticate(context)
            admitted = self._admit(request, identity)
            if admitted.ticket is not None and not admitted.ticket.wait(self._ack_timeout):
                self._flow.release(admitted.nbytes)
                raise RequestError(grpc.StatusCode.UNAVAILABLE, "events were not made durable in time; retry")
            response = self._finish(admitted)
        except RequestError as exc:
            self._metrics.requests.labels("Publish", exc.code.name).inc()
            exc.abort(context)
            raise  # unreachable: abort raises
        self._metrics.requests.labels("Publish", "OK").inc()
        return response

    def PublishStream(
        self, request_iterator: Iterator[PublishRequest | Incoming], context: grpc.ServicerContext
    ) -> Iterator[PublishResponse]:
        try:
            identity = self._authenticate(context)
        except RequestError as exc:
            exc.abort(context)
        out: queue.SimpleQueue[object] = queue.SimpleQueue()
        window = threading.BoundedSemaphore(self._window)
        counts = {"submitted": 0, "answered": 0}

        def complete(admitted: _Admitted) -> None:
            try:
                out.put(self._finish(admitted))
            except RequestError as exc:
                out.put(exc)
            finally:
                window.release()

        def reader() -> None:
            try:
                for request in request_iterator:
                    window.acquire()
                    counts["submitted"] += 1
                    try:
                        admitted = self._admit(request, identity, on_done=complete)
                    except RequestError as exc:
                        window.release()
                        out.put(exc)
                        return
                    if admitted.ticket is None:
                        complete(admitted)
            except Exception as exc:  # the client went away or sent garbage: end the stream
                out.put(RequestError(grpc.StatusCode.CANCELLED, f"stream read failed: {exc.__class__.__name__}"))
            finally:
                out.put(_END)

        threading.Thread(target=reader, name="stream-reader", daemon=True).start()
        reading = True
        while reading or counts["answered"] < counts["submitted"]:
            item = out.get()
            if item is _END:
                reading = False
            elif isinstance(item, RequestError):
                self._metrics.requests.labels("PublishStream", item.code.name).inc()
                item.abort(context)
                return
            else:
                counts["answered"] += 1
                self._metrics.requests.labels("PublishStream", "OK").inc()
                assert isinstance(item, PublishResponse)
                yield item

    # --- steps ---------------------------------------------------------------------------------------------------
    def _authenticate(self, context: grpc.ServicerContext) -> Identity:
        try:
            return self._auth.authenticate(context.invocation_metadata())
        except AuthError as exc:
            raise RequestError(grpc.StatusCode.UNAUTHENTICATED, str(exc)) from None

    def _admit(
        self,
        incoming: PublishRequest | Incoming,
        identity: Identity,
        on_done: Callable[[_Admitted], None] | None = None,
    ) -> _Admitted:
        """Validate and queue one request. Raises ``RequestError``. ``ticket`` is None when nothing was accepted."""
        request, raw_events = _unwrap(incoming)
        if self._closing.is_set():
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "front-end is shutting down; retry on another one")
        events = request.events
        if len(events) > self._max_events:
            msg = f"{len(events)} events in one request > limit {self._max_events}"
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, msg)
        if identity.categories is not None:
            forbidden = sorted({e.category for e in events} & self._configured - identity.categories)
            if forbidden:
                msg = f"client {identity.client_id!r} may not write to categories {forbidden}"
                raise RequestError(grpc.StatusCode.PERMISSION_DENIED, msg)
        checked = self._validator.check(events, self._clock(), identity.client_id, raw_events)
        for r in checked.rejections:
            self._metrics.events_rejected.labels(_REASONS.get(r.code, "UNKNOWN")).inc()
        if not checked.groups:
            return _Admitted(request, checked, 0, None)
        nbytes = checked.accepted_bytes + EVENT_OVERHEAD * checked.accepted
        if not self._flow.try_acquire(nbytes):
            self._metrics.backpressure.inc()
            raise RequestError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"front-end has {self._flow.used} bytes in flight; retry later",
                self._retry_after,
            )
        admitted = _Admitted(request, checked, nbytes, None)
        admitted.ticket = Ticket(None if on_done is None else lambda _err: on_done(admitted))
        self._packer.add(checked.groups, admitted.ticket, checked.stamp, checked.times)
        return admitted

    def _finish(self, admitted: _Admitted) -> PublishResponse:
        """Release the request's bytes and build its response. Raises ``RequestError`` if not durable."""
        if admitted.ticket is not None:
            self._flow.release(admitted.nbytes)
            error = admitted.ticket.error
            if isinstance(error, Backpressure):
                self._metrics.backpressure.inc()
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error), error.retry_after_s)
            if error is not None:
                raise RequestError(grpc.StatusCode.UNAVAILABLE, f"events not durable: {error}")
            for (category, _hour), evs in admitted.checked.groups.items():
                self._metrics.events_accepted.labels(category).inc(len(evs))
        return build_response(admitted.request, admitted.checked)


def build_response(request: PublishRequest, checked: Checked) -> PublishResponse:
    """One status per event in request order; only the rejected ones if the request asked for compact answers."""
    resp = PublishResponse(sequence=request.sequence, accepted=checked.accepted, rejected=len(checked.rejections))
    add = resp.statuses.add
    if request.omit_accepted_statuses:
        for r in checked.rejections:
            add(event_id=r.event_id, index=r.index, code=r.code, message=r.message)
        return resp
    rejected = {r.index: r for r in checked.rejections}
    for i, e in enumerate(request.events):
        bad = rejected.get(i)
        if bad is None:
            add(event_id=e.event_id, index=i, code=_ACCEPTED)
        else:
            add(event_id=bad.event_id, index=i, code=bad.code, message=bad.message)
    return resp
