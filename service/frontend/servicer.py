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

Where to look: the request as it arrives, bytes parsed lazily, is ``service.frontend.incoming``; request-level errors
as gRPC statuses (``RequestError``) are ``service.frontend.status``; the per-event statuses of an answer are
``service.frontend.responses``. This module admits a request (authenticate, check, reserve in-flight bytes, hand the
events to the packer) and answers it once its ticket settled.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import grpc

from service.catalog import Catalog
from service.contract import PublishRequest, PublishResponse, StatusCode, ingest_pb2_grpc
from service.frontend.auth import Authenticator, Identity
from service.frontend.errors import AuthError, Backpressure
from service.frontend.fastpath import Scanned, WireScanner
from service.frontend.flow import InflightBytes
from service.frontend.incoming import Incoming
from service.frontend.metrics import Metrics
from service.frontend.packer import EVENT_OVERHEAD, Packer, Ticket
from service.frontend.responses import build_response, scanned_response
from service.frontend.status import RequestError
from service.frontend.validate import Checked, Validator

log = logging.getLogger(__name__)
_REASONS = {v: k for k, v in StatusCode.items()}
_END = object()


def _unwrap(request: PublishRequest | Incoming) -> tuple[PublishRequest, Sequence[bytes] | None]:
    if isinstance(request, Incoming):
        return request.request, request.raw_events
    return request, None


@dataclass(slots=True)
class _Admitted:
    request: PublishRequest | Incoming
    checked: Checked | Scanned
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
        scanner: WireScanner | None = None,
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
        self._scanner = scanner
        self._closing = threading.Event()

    def close_intake(self) -> None:
        """Refuse new requests from now on (UNAVAILABLE); requests already admitted complete normally."""
        self._closing.set()

    # --- gRPC methods --------------------------------------------------------------------------------------------
    def Publish(self, request: PublishRequest | Incoming, context: grpc.ServicerContext) -> PublishResponse:
        try:
            identity = self._authenticate(context)
            settled = threading.Event()  # set by the ticket's callback, after the bytes went back (see ``_queue``)
            admitted = self._admit(request, identity, settled)
            if admitted.ticket is not None and not settled.wait(self._ack_timeout):
                # The events are still in the packer or the spool writer's queue: their bytes stay charged until
                # their envelopes settle, so the client's retry of the same events is refused (G4), not queued again.
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
        # Two bounds per stream: ``window`` slots are held from a request's read until it settles (not durable yet:
        # at most ``stream_window``), ``unsent`` slots until gRPC took its response (after ``yield``: at most twice
        # that). So a client that stops reading its responses stops the server reading its requests (G4), while
        # settled responses waiting for the sender do not stall the pipeline of requests being made durable.
        window = threading.BoundedSemaphore(self._window)
        unsent = threading.BoundedSemaphore(2 * self._window)
        counts = {"submitted": 0, "answered": 0}
        gone = threading.Event()  # the handler ended (client gone, error): the reader must not wait for a slot

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
                    for slot in (unsent, window):
                        while not slot.acquire(timeout=0.5):
                            if gone.is_set():
                                return
                    counts["submitted"] += 1
                    try:
                        admitted = self._admit(request, identity, on_done=complete)
                    except RequestError as exc:
                        window.release()
                        unsent.release()
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
        try:
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
                    unsent.release()  # gRPC took the response: the reader may take one more request
        finally:
            gone.set()

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
        on_done: Callable[[_Admitted], None] | threading.Event,
    ) -> _Admitted:
        """Validate and queue one request. Raises ``RequestError``. ``ticket`` is None when nothing was accepted.
        ``on_done`` is called, or set, when the ticket settled (see ``_queue``).

        The C fast path (``scanner``) decides first when it can; the Python path (parse, ``Validator.check``) decides
        everything else, with the same checks in the same order."""
        if self._closing.is_set():
            raise RequestError(grpc.StatusCode.UNAVAILABLE, "front-end is shutting down; retry on another one")
        now = self._clock()
        if self._scanner is not None and isinstance(incoming, Incoming):
            scanned = self._scanner.scan(incoming.raw, now, identity.client_id)
            if scanned is not None:
                self._check_allowed(scanned.categories, identity)
                return self._queue(incoming, scanned, on_done)
        request, raw_events = _unwrap(incoming)
        events = request.events
        if len(events) > self._max_events:
            msg = f"{len(events)} events in one request > limit {self._max_events}"
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, msg)
        self._check_allowed({e.category for e in events}, identity)
        checked = self._validator.check(events, now, identity.client_id, raw_events)
        for r in checked.rejections:
            self._metrics.events_rejected.labels(_REASONS.get(r.code, "UNKNOWN")).inc()
        return self._queue(request, checked, on_done)

    def _check_allowed(self, categories: set[str], identity: Identity) -> None:
        if identity.categories is not None:
            forbidden = sorted(categories & self._configured - identity.categories)
            if forbidden:
                msg = f"client {identity.client_id!r} may not write to categories {forbidden}"
                raise RequestError(grpc.StatusCode.PERMISSION_DENIED, msg)

    def _queue(
        self,
        request: PublishRequest | Incoming,
        checked: Checked | Scanned,
        on_done: Callable[[_Admitted], None] | threading.Event,
    ) -> _Admitted:
        """Reserve in-flight bytes for the accepted events and hand them to the packer.

        The bytes are given back in exactly one place, the ticket's callback, when every envelope holding the events
        settled (durable or failed), whatever the caller did meanwhile (answered a timeout, went away); ``on_done``
        runs (or is set) after that. So ``max_inflight_bytes`` bounds everything admitted and not yet settled: open
        batches, unconfirmed publishes and the spool writer's queue. A unary call passes an ``Event``, so a call that
        timed out does not keep its whole request (rejected events too, which are not charged) alive until then."""
        if not checked.accepted:
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
        then = on_done.set if isinstance(on_done, threading.Event) else partial(on_done, admitted)
        admitted.ticket = Ticket(partial(_settled, self._flow, nbytes, then))
        if isinstance(checked, Scanned):
            self._packer.add_framed(checked.groups, admitted.ticket)
        else:
            self._packer.add(checked.groups, admitted.ticket, checked.stamp, checked.times)
        return admitted

    def _finish(self, admitted: _Admitted) -> PublishResponse:
        """Build the response of a settled request. Raises ``RequestError`` if not durable."""
        if admitted.ticket is not None:
            error = admitted.ticket.error
            if isinstance(error, Backpressure):
                self._metrics.backpressure.inc()
                raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error), error.retry_after_s)
            if error is not None:
                raise RequestError(grpc.StatusCode.UNAVAILABLE, f"events not durable: {error}")
            checked = admitted.checked
            if isinstance(checked, Scanned):
                for g in checked.groups:
                    self._metrics.events_accepted.labels(g.category).inc(g.count)
            else:
                for (category, _hour), evs in checked.groups.items():
                    self._metrics.events_accepted.labels(category).inc(len(evs))
        if isinstance(admitted.checked, Scanned):
            return scanned_response(admitted.request, admitted.checked)
        request = admitted.request
        return build_response(request.request if isinstance(request, Incoming) else request, admitted.checked)


def _settled(flow: InflightBytes, nbytes: int, then: Callable[[], object], _error: BaseException | None) -> None:
    flow.release(nbytes)
    then()
