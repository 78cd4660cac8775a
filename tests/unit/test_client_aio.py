"""AsyncIngestClient mirrors the blocking client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.client import AsyncIngestClient, ClientOptions, RetryPolicy
from tests.unit.frontend_support import published_event_ids, running_frontend

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
