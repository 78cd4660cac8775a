"""The SDK's one retry policy: which gRPC codes are retried, how long to wait, and for how long in total.

Contract:
  * Only ``RETRYABLE`` codes are retried (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED); everything else fails
    at once. So does gRPC's own RESOURCE_EXHAUSTED for a message over the receiver's size limit ("Received message
    larger than max", no RetryInfo): the same request would be refused again.
  * The wait is exponential with full jitter, but never shorter than the server's ``google.rpc.RetryInfo`` delay.
  * All attempts together stop after ``deadline_s``; the last error is re-raised. A wait that would reach the
    deadline is not slept: the loop stops at once instead (no attempt starts after ``deadline_s``).
  * Events keep their ids across attempts, so a retry never creates a second copy that survives deduplication.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import grpc
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_before_delay,
)

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       grpc.StatusCode.DEADLINE_EXCEEDED})  # fmt: skip


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff settings (seconds). ``deadline_s`` bounds the whole retry loop of one batch."""

    deadline_s: float = 60.0
    initial_s: float = 0.05
    maximum_s: float = 5.0
    multiplier: float = 2.0


def grpc_code(exc: BaseException) -> grpc.StatusCode | None:
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        code = exc.code()
        return code if isinstance(code, grpc.StatusCode) else None
    return None


def is_retryable(exc: BaseException) -> bool:
    code = grpc_code(exc)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and too_large(exc):
        return False
    return code in RETRYABLE


def too_large(exc: BaseException) -> bool:
    """gRPC's own size-limit error ("Sent/Received message larger than max"): no RetryInfo, and a retry of the same
    request cannot succeed. Backpressure from a front-end always carries RetryInfo."""
    details = getattr(exc, "details", None)
    try:
        text = str(details() if callable(details) else "")
    except Exception:
        return False
    return "message larger than max" in text.lower() and retry_delay(exc) is None


def retry_delay(exc: BaseException) -> float | None:
    """The server's ``google.rpc.RetryInfo`` delay in seconds, if the error carries one (rich status trailer)."""
    trailers = getattr(exc, "trailing_metadata", None)
    if not isinstance(exc, grpc.RpcError) or trailers is None:
        return None
    from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

    try:
        for key, value in trailers() or ():
            if key != "grpc-status-details-bin":
                continue
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return float(info.retry_delay.ToNanoseconds()) / 1e9
    except Exception:  # a malformed trailer must not break the retry loop
        return None
    return None


class _Wait:
    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._p = policy
        self._rng = rng

    def __call__(self, state: RetryCallState) -> float:
        p = self._p
        cap = min(p.maximum_s, p.initial_s * p.multiplier ** (state.attempt_number - 1))
        wait = self._rng.uniform(0, cap)
        exc = state.outcome.exception() if state.outcome is not None else None
        hint = retry_delay(exc) if exc is not None else None
        # Never past the deadline: a wait that reaches it makes the stop condition end the loop instead of sleeping.
        remaining = max(0.0, p.deadline_s - (state.seconds_since_start or 0.0))
        return min(max(wait, hint or 0.0), remaining)


def _kwargs(policy: RetryPolicy, before_sleep: Any, rng: random.Random | None) -> dict[str, Any]:
    return {
        "retry": retry_if_exception(is_retryable),
        "stop": stop_before_delay(policy.deadline_s),
        "wait": _Wait(policy, rng or random.Random()),
        "reraise": True,
        "before_sleep": before_sleep,
    }


def retrying(policy: RetryPolicy, before_sleep: Any = None, rng: random.Random | None = None) -> Retrying:
    """A tenacity ``Retrying`` for sync calls; ``before_sleep(state)`` runs before each wait (failover hook)."""
    return Retrying(**_kwargs(policy, before_sleep, rng))


def async_retrying(policy: RetryPolicy, before_sleep: Any = None, rng: random.Random | None = None) -> AsyncRetrying:
    """The same policy for coroutines."""
    return AsyncRetrying(**_kwargs(policy, before_sleep, rng))
