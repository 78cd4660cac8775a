"""The retry policy: only retryable codes, RetryInfo honoured, bounded in time, a hook per retry for failover."""

from __future__ import annotations

import time

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from service.client.retry import RetryPolicy, retry_delay, retrying

pytestmark = pytest.mark.unit


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, retry_after_s: float | None = None, details: str = "fake") -> None:
        self._code = code
        self._details = details
        self._md: tuple[tuple[str, bytes], ...] = ()
        if retry_after_s is not None:
            d = duration_pb2.Duration()
            d.FromNanoseconds(int(retry_after_s * 1e9))
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.RetryInfo(retry_delay=d))
            st = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="full", details=[detail])
            self._md = rpc_status.to_status(st).trailing_metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._md


def run(errors: list[Exception], policy: RetryPolicy) -> tuple[int, list[float]]:
    calls = 0
    sleeps: list[float] = []
    r = retrying(policy)
    r.sleep = sleeps.append  # type: ignore[method-assign]
    for attempt in r:
        with attempt:
            calls += 1
            if errors:
                raise errors.pop(0)
    return calls, sleeps


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED]
)
def test_retryable_codes_are_retried(code: grpc.StatusCode) -> None:
    calls, _ = run([FakeRpcError(code), FakeRpcError(code)], RetryPolicy())
    assert calls == 3


@pytest.mark.parametrize(
    "code",
    [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
     grpc.StatusCode.INTERNAL],
)  # fmt: skip
def test_permanent_codes_are_not_retried(code: grpc.StatusCode) -> None:
    with pytest.raises(FakeRpcError):
        run([FakeRpcError(code), FakeRpcError(code)], RetryPolicy())


def test_retry_info_sets_the_minimum_wait() -> None:
    err = FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after_s=1.5)
    assert retry_delay(err) == pytest.approx(1.5)
    _, sleeps = run([err], RetryPolicy(initial_s=0.001, maximum_s=0.002))
    assert sleeps == [pytest.approx(1.5)]


def test_total_time_is_bounded() -> None:
    policy = RetryPolicy(deadline_s=0.3, initial_s=0.05, maximum_s=0.05)
    r = retrying(policy)
    t0 = time.monotonic()
    with pytest.raises(FakeRpcError):
        for attempt in r:
            with attempt:
                raise FakeRpcError(grpc.StatusCode.UNAVAILABLE)
    assert time.monotonic() - t0 < 1.0


def test_before_sleep_hook_runs_once_per_retry() -> None:
    hops: list[int] = []
    r = retrying(RetryPolicy(initial_s=0.001, maximum_s=0.001), before_sleep=lambda s: hops.append(s.attempt_number))
    errors = [FakeRpcError(grpc.StatusCode.UNAVAILABLE)] * 2
    for attempt in r:
        with attempt:
            if errors:
                raise errors.pop()
    assert hops == [1, 2]


def test_message_over_the_size_limit_is_not_retried() -> None:
    big = FakeRpcError(
        grpc.StatusCode.RESOURCE_EXHAUSTED, details="Received message larger than max (2097945 vs. 1048576)"
    )
    with pytest.raises(FakeRpcError):
        run([big, big], RetryPolicy())
    # Backpressure (RESOURCE_EXHAUSTED with RetryInfo) is still retried.
    calls, _ = run([FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after_s=0.01)], RetryPolicy())
    assert calls == 2


def test_retry_info_never_sleeps_past_the_deadline() -> None:
    err = FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after_s=30.0)
    sleeps: list[float] = []
    r = retrying(RetryPolicy(deadline_s=1.0))
    r.sleep = sleeps.append  # type: ignore[method-assign]
    with pytest.raises(FakeRpcError):
        for attempt in r:
            with attempt:
                raise err
    assert sleeps == []  # a 30 s wait would pass the 1 s deadline: stop at once with the server's error
