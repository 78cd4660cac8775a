"""The landing pool: a fixed thread count from the start (soak curves must show leaks, not lazy pools)."""

from __future__ import annotations

import threading

import pytest

pytestmark = pytest.mark.unit


def test_landing_pool_threads_all_exist_from_the_start() -> None:
    from replicator.scheduler import prestarted

    pool = prestarted(6, "t-land")
    try:
        assert sum(t.name.startswith("t-land") for t in threading.enumerate()) == 6
        assert pool.submit(lambda: 7).result() == 7
    finally:
        pool.shutdown()
