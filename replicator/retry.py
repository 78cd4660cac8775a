"""The one place where the replicator retries object-store calls.

Retryable (transient): HTTP 408, 429, 500, 502, 503, 504, connection errors and resets, timeouts (as raised by
requests or, on the direct upload path, by urllib3). Everything else is
permanent and raised at once. Retries back off exponentially with full jitter (0.1 s doubling to ``max_backoff``)
and stop at ``deadline`` seconds in total, after which the last error surfaces as ``StoreError(transient=True)``.
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


def is_transient(exc: BaseException) -> bool:
    """True for errors worth retrying (see the module docstring)."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, gexc.GoogleAPICallError) and exc.code == 408


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
            StoreError: permanent error (``transient=False``) or deadline exhausted (``transient=True``). Other
                exceptions ``fn`` raises on purpose (for example ``ObjectNotFound``) pass through unchanged.
        """
        start = monotonic()
        backoff = self.initial
        while True:
            try:
                return fn()
            except Exception as exc:
                if not is_transient(exc):
                    if isinstance(
                        exc, gexc.GoogleAPICallError | requests.RequestException | urllib3.exceptions.HTTPError
                    ):
                        raise StoreError(op, name, repr(exc), transient=False) from exc
                    raise
                remaining = self.deadline - (monotonic() - start)
                if remaining <= 0:
                    raise StoreError(op, name, f"gave up after {self.deadline:.0f}s: {exc!r}", transient=True) from exc
                delay = min(random.uniform(0, backoff), remaining)
                log.debug("retrying %s %s in %.2fs after %r", op, name, delay, exc)
                if on_retry is not None:
                    on_retry(op)
                sleep(delay)
                backoff = min(backoff * 2, self.max_backoff)
