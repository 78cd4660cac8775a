"""ordered_map: input order, bounded read-ahead, errors at their turn."""

from __future__ import annotations

import threading
import time

import pytest

from replicator.readahead import ordered_map

pytestmark = pytest.mark.unit


def test_results_come_in_input_order_even_when_calls_finish_out_of_order() -> None:
    def slow_first(i: int) -> int:
        time.sleep(0.02 if i % 3 == 0 else 0.0)
        return i * i

    assert list(ordered_map(slow_first, range(50), threads=4, window=8)) == [i * i for i in range(50)]


def test_at_most_window_calls_are_started_ahead_of_the_consumer() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def record(i: int) -> int:
        with lock:
            started.append(i)
        return i

    gen = ordered_map(record, range(1000), threads=2, window=5)
    assert next(gen) == 0
    time.sleep(0.05)
    with lock:
        assert max(started) < 5 + 1  # the first result was handed out after 5 submissions, plus one refill at most
    gen.close()


def test_calls_run_concurrently() -> None:
    barrier = threading.Barrier(4, timeout=10)  # breaks (BrokenBarrierError) unless 4 calls are in flight at once

    def meet(i: int) -> int:
        barrier.wait()
        return i

    assert list(ordered_map(meet, range(8), threads=4, window=8)) == list(range(8))


def test_an_error_is_raised_at_its_items_turn() -> None:
    def boom(i: int) -> int:
        if i == 3:
            raise KeyError(i)
        return i

    got: list[int] = []
    with pytest.raises(KeyError):
        for v in ordered_map(boom, range(10), threads=2, window=4):
            got.append(v)
    assert got == [0, 1, 2]


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        list(ordered_map(lambda i: i, [1], window=0))
