"""The SDK's one retry policy: which gRPC codes are retried, how long to wait, and for how long in total.

Contract:
  * Only ``RETRYABLE`` codes are retried (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED); everything else fails
    at once.
  * The wait is exponential with full jitter, but never shorter than the server's ``google.rpc.RetryInfo`` delay.
  * All attempts together stop after ``deadline_s``; the last error is re-raised.
  * Events keep their ids across attempts, so a retry never creates a second copy that survives deduplication.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import grpc
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception, stop_after_delay

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
    return grpc_code(exc) in RETRYABLE


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
        return max(wait, hint or 0.0)


def _kwargs(policy: RetryPolicy, before_sleep: Any, rng: random.Random | None) -> dict[str, Any]:
    return {
        "retry": retry_if_exception(is_retryable),
        "stop": stop_after_delay(policy.deadline_s),
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
