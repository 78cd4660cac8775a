"""AsyncIngestClient mirrors the blocking client."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from service.client import AsyncIngestClient, ClientClosed, ClientOptions, FlushResult, RetryPolicy
from service.client.results import Failure, Rejection
from service.contract import PublishRequest, PublishResponse
from tests.unit.frontend_support import published_event_ids, running_frontend
from tests.unit.test_client_sync import FakeIngest, fake_server, hang, reject_first

pytestmark = pytest.mark.unit

FAST = ClientOptions(max_latency_s=0.01, max_batch_events=7, retry=RetryPolicy(deadline_s=5.0, maximum_s=0.2))


def test_async_send_flush_and_failover(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (fe, _stub, pub):

        async def go() -> tuple[list[str], str, object]:
            async with AsyncIngestClient(["127.0.0.1:1", f"127.0.0.1:{fe.port}"], options=FAST) as client:
                ids = [await client.send("app_log", {"n": i}) for i in range(30)]
                bad = await client.send("no_such_category", {"n": 0})
                return ids, bad, await client.flush(timeout=20)

        ids, bad, result = asyncio.run(go())
        assert result.accepted == 30  # type: ignore[attr-defined]
        assert [(r.event_id, r.code) for r in result.rejected] == [(bad, "UNKNOWN_CATEGORY")]  # type: ignore[attr-defined]
        assert sorted(published_event_ids(pub)) == sorted(ids)


def test_async_loop_ending_before_close_logs_the_loss(caplog: pytest.LogCaptureFixture) -> None:
    servicer = FakeIngest()
    servicer.handler = hang(servicer)
    opts = ClientOptions(max_batch_events=3, max_latency_s=0.01, rpc_timeout_s=10)
    seen: list[Rejection | Failure] = []

    async def go(port: int) -> None:
        client = AsyncIngestClient(f"127.0.0.1:{port}", options=opts, on_rejected=seen.append)
        for i in range(5):
            await client.send("app_log", {"i": i})
        await asyncio.sleep(0.2)  # both batches in flight (hung); the loop then ends without close()

    with fake_server(servicer) as port:
        asyncio.run(go(port))
    assert "5 events buffered or in flight were NOT delivered" in caplog.text
    assert len(seen) == 5 and {f.grpc_code for f in seen} == {"CancelledError"}  # type: ignore[union-attr]


def test_async_failover_keeps_a_cursor_per_batch() -> None:
    hung = FakeIngest()
    hung.handler = hang(hung)
    good = FakeIngest()
    opts = ClientOptions(max_batch_events=10, max_latency_s=0.01, rpc_timeout_s=0.3,
                         retry=RetryPolicy(deadline_s=5, initial_s=0.001, maximum_s=0.01))  # fmt: skip

    async def go(targets: list[str]) -> FlushResult:
        async with AsyncIngestClient(targets, options=opts) as client:
            for i in range(160):
                await client.send("app_log", {"i": i})
            return await client.flush(timeout=10)

    with fake_server(hung) as hp, fake_server(good) as gp:
        result = asyncio.run(go([f"127.0.0.1:{hp}", f"127.0.0.1:{gp}"]))
    assert result.accepted == 160
    assert hung.calls <= 16  # one attempt per batch at most


def test_async_callback_exception_changes_no_outcome(caplog: pytest.LogCaptureFixture) -> None:
    def callback(item: Rejection | Failure) -> None:
        raise ValueError("oops")

    async def go(port: int) -> FlushResult:
        async with AsyncIngestClient(f"127.0.0.1:{port}", options=FAST, on_rejected=callback) as client:
            for i in range(5):
                await client.send("app_log", {"i": i})
            return await client.flush(timeout=5)

    with fake_server(FakeIngest(reject_first)) as port:
        result = asyncio.run(go(port))
    assert (result.accepted, len(result.rejected), result.failed) == (4, 1, [])
    assert "on_rejected raised" in caplog.text


def test_async_blocked_sender_gets_client_closed() -> None:
    servicer = FakeIngest()

    def slow(request: PublishRequest, context: Any) -> PublishResponse:
        servicer.release.wait(5)
        return PublishResponse(accepted=len(request.events))

    servicer.handler = slow
    opts = ClientOptions(max_buffer_events=1, max_latency_s=0.01, rpc_timeout_s=10)

    async def go(port: int) -> tuple[BaseException | None, int]:
        client = AsyncIngestClient(f"127.0.0.1:{port}", options=opts)
        await client.send("app_log", {"i": 0})
        sender = asyncio.create_task(client.send("app_log", {"i": 1}))
        await asyncio.sleep(0.1)  # blocked on the full buffer
        closing = asyncio.create_task(client.close())
        await asyncio.wait([sender], timeout=2)
        t0 = time.monotonic()
        servicer.release.set()
        result = await closing
        assert time.monotonic() - t0 < 5
        return (sender.exception() if sender.done() else None), result.accepted

    with fake_server(servicer) as port:
        error, accepted = asyncio.run(go(port))
    assert isinstance(error, ClientClosed) and accepted == 1
