"""The one place where the replicator retries object-store calls.

Retryable (transient): HTTP 408, 429, 500, 502, 503, 504, connection errors and resets, timeouts (as raised by
requests or, on the direct upload path, by urllib3), and access-token refreshes that could not reach the metadata
server or token endpoint (google-auth's ``TransportError``, or a ``RefreshError`` caused by one: a brief
metadata-server outage on GKE) or that google-auth marks ``retryable``. Everything else is permanent and raised at
once; API, HTTP and auth errors as ``StoreError(transient=False)``. Retries back off exponentially with full jitter
(0.1 s doubling to ``max_backoff``) and stop at ``deadline`` seconds in total, after which the last error surfaces
as ``StoreError(transient=True)``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
import urllib3
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from replicator.errors import StoreError

T = TypeVar("T")
log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    ConnectionError,
    TimeoutError,
    # The direct upload path (replicator/gcs_upload.py) sees urllib3's own errors; these are the ones requests turns
    # into ConnectionError/Timeout/ChunkedEncodingError above (resets, refused or timed-out connections, TLS errors,
    # a closed pool, a cut-off response).
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    urllib3.exceptions.SSLError,
    urllib3.exceptions.ClosedPoolError,
    urllib3.exceptions.IncompleteRead,
)


#: Errors that become ``StoreError(transient=False)`` when not transient; anything else passes through unchanged.
STORE_ERRORS: tuple[type[BaseException], ...] = (
    gexc.GoogleAPICallError,
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    auth_exc.GoogleAuthError,
)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying (see the module docstring)."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    if isinstance(exc, auth_exc.GoogleAuthError):
        return _auth_transient(exc)
    return isinstance(exc, gexc.GoogleAPICallError) and exc.code == 408


def _auth_transient(exc: auth_exc.GoogleAuthError) -> bool:
    """A token refresh that could not reach its endpoint, or one google-auth itself calls retryable (its ``retryable``
    flag: a 5xx or ``temporarily_unavailable`` answer of the token endpoint). An answer such as ``invalid_grant`` is
    permanent."""
    if isinstance(exc, auth_exc.TransportError):
        return True
    if not isinstance(exc, auth_exc.RefreshError):
        return False
    if exc.retryable:
        return True
    # Compute Engine / GKE credentials wrap the metadata server's TransportError: ``raise RefreshError(e) from e``.
    cause = exc.__cause__
    for _ in range(4):
        if cause is None:
            return False
        if isinstance(cause, auth_exc.TransportError):
            return True
        cause = cause.__cause__
    return False


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retry: ``deadline`` seconds in total, backoff from ``initial`` doubling up to ``max_backoff``."""

    deadline: float = 60.0
    initial: float = 0.1
    max_backoff: float = 5.0

    def call(
        self,
        fn: Callable[[], T],
        op: str,
        name: str,
        *,
        on_retry: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> T:
        """Run ``fn`` until it succeeds, raises a permanent error, or the deadline passes.

        Raises:
            StoreError: permanent error (``transient=False``: an API, HTTP or auth error that is not transient) or
                deadline exhausted (``transient=True``). Other exceptions ``fn`` raises on purpose (for example
                ``ObjectNotFound``) pass through unchanged.
        """
        start = monotonic()
        backoff = self.initial
        while True:
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    if isinstance(exc, STORE_ERRORS):
                        raise StoreError(op, name, repr(exc), transient=False) from exc
                    raise
                remaining = self.deadline - (monotonic() - start)
                if remaining <= 0:
                    raise StoreError(op, name, f"gave up after {self.deadline:g}s: {exc!r}", transient=True) from exc
                delay = min(random.uniform(0, backoff), remaining)
                log.debug("retrying %s %s in %.2fs after %r", op, name, delay, exc)
                if on_retry is not None:
                    on_retry(op)
                sleep(delay)
                backoff = min(backoff * 2, self.max_backoff)
