"""The process-wide decompression budget (G4, G5): concurrent landings never decompress more than it allows, a zstd
bomb is refused or waits instead of allocating, and a wait is bounded (a transient error: nack, redelivery)."""

from __future__ import annotations

import datetime as dt
import io
import random
import threading
import time
import tracemalloc
from collections.abc import Mapping
from typing import Any

import pytest
import zstandard

from replicator import decode, landing
from replicator.budget import BudgetExhausted, ByteBudget, process_budget
from replicator.errors import StoreError
from replicator.handler import MessageHandler
from replicator.landing import Lander
from replicator.metrics import Metrics
from replicator.store import MemoryStore
from replicator.synth import make_envelope
from service.envelope import FORMAT, PoisonEnvelope
from tests.unit.replicator_support import FakeDeadLetter, FakeMessage

pytestmark = pytest.mark.unit
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
MIB = 1 << 20
ATTRS = {"logpipe_format": FORMAT, "logpipe_compression": "zstd"}


def _unsized_bomb(size: int) -> bytes:
    """Zeros compressed by a streaming compressor: the frame does not state its size (only the limit bounds it)."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as w:
        for _ in range(size // MIB):
            w.write(bytes(MIB))
    data = out.getvalue()
    assert zstandard.frame_content_size(data) == -1
    return data


# --- ByteBudget ----------------------------------------------------------------------------------------------------
def test_concurrent_holds_never_exceed_the_total() -> None:
    budget = ByteBudget(100, timeout=10)
    live = [0, 0]  # bytes held now, most ever
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(200):
            with budget.hold(rng.randint(1, 60)) as n:
                with lock:
                    live[0] += n
                    live[1] = max(live[1], live[0])
                    assert live[0] <= 100
                time.sleep(rng.random() / 5000)
                with lock:
                    live[0] -= n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert live == [0, budget.peak] and 60 < budget.peak <= 100  # several held at once, never more than the total
    assert budget.used == 0


def test_a_request_above_the_total_is_clamped_so_it_cannot_deadlock() -> None:
    budget = ByteBudget(10, timeout=1)
    with budget.hold(10**12) as n:
        assert n == 10 and budget.used == 10
    assert budget.used == 0


def test_waiters_are_served_in_order_so_a_large_one_is_not_starved() -> None:
    budget = ByteBudget(100, timeout=5)
    order: list[str] = []
    first = budget.hold(60)
    first.__enter__()

    def take(name: str, n: int) -> None:
        with budget.hold(n):
            order.append(name)

    big = threading.Thread(target=take, args=("big", 80))
    big.start()
    time.sleep(0.05)  # big is queued first
    small = threading.Thread(target=take, args=("small", 10))  # 10 fits now, but big is ahead of it
    small.start()
    time.sleep(0.05)
    assert order == []
    first.__exit__(None, None, None)
    big.join(2)
    small.join(2)
    assert order == ["big", "small"]


def test_a_wait_is_bounded_and_leaves_nothing_held() -> None:
    budget = ByteBudget(100, timeout=0.05)
    with budget.hold(100):
        started = time.monotonic()
        with pytest.raises(BudgetExhausted) as info, budget.hold(1):
            pass
        assert time.monotonic() - started < 1
    assert isinstance(info.value, StoreError) and info.value.transient  # the handler nacks it
    assert budget.used == 0
    with budget.hold(100):  # the timed-out waiter left the queue
        pass


def test_every_lander_of_the_process_shares_one_budget() -> None:
    a = Lander(MemoryStore(), ["ads_click"], Metrics())
    b = Lander(MemoryStore(), ["app_log"], Metrics())
    assert a._budget is b._budget is process_budget()


# --- the lander under the budget -----------------------------------------------------------------------------------
def test_concurrent_landings_never_decompress_more_than_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Instrumented: while a check runs, count the most it may decompress (``decompressed_bound``: the stated size,
    or the limit for a frame that does not state one), and make checks overlap. Without the budget 8 threads
    would hold 8 x 4 MiB at once."""
    limit, total = 4 * MIB, 20 * MIB
    live = [0, 0]
    lock = threading.Lock()
    real = decode.check_envelope

    def instrumented(data: bytes, attributes: Mapping[str, str], **kw: Any) -> decode.Checked:
        n = decode.decompressed_bound(data, kw["max_uncompressed"])
        with lock:
            live[0] += n
            live[1] = max(live[1], live[0])
        try:
            time.sleep(0.01)  # let the other threads pile up
            return real(data, attributes, **kw)
        finally:
            with lock:
                live[0] -= n

    monkeypatch.setattr(landing, "check_envelope", instrumented)
    budget = ByteBudget(total, timeout=30)
    lander = Lander(MemoryStore(), ["ads_click"], Metrics(), max_uncompressed=limit, budget=budget)
    bomb = _unsized_bomb(16 * MIB)
    good = make_envelope("ads_click", ["a", "b"], H)
    outcomes: list[str] = []

    def land(data: bytes, attrs: Mapping[str, str]) -> None:
        try:
            lander.land(data, attrs)
            outcomes.append("landed")
        except PoisonEnvelope as p:
            outcomes.append(p.reason)

    threads = [threading.Thread(target=land, args=(bomb, ATTRS)) for _ in range(8)]
    threads += [threading.Thread(target=land, args=(good.data, good.attributes)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["landed"] * 8 + ["too_large"] * 8
    assert live[1] <= total // 2  # each check is charged twice its bound (body + parse)
    assert live[1] > limit  # and they did overlap: the budget bounds, it does not serialize
    assert budget.used == 0 and budget.peak <= total


def test_a_bomb_that_states_its_size_is_refused_without_allocating() -> None:
    """/tmp/review2/bomb2.py's message: 256 MiB of zeros in ~8 KiB, with the size in the frame header."""
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 * MIB))
    lander = Lander(MemoryStore(), ["ads_click"], Metrics(), budget=ByteBudget(512 * MIB))
    tracemalloc.start()
    try:
        with pytest.raises(PoisonEnvelope) as info:
            lander.land(bomb, ATTRS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason == "too_large"
    assert peak < 4 * MIB  # against 256 MiB before (the per-envelope limit was 256 MiB)


def test_an_unsized_bomb_allocates_at_most_the_landing_limit() -> None:
    lander = Lander(MemoryStore(), ["ads_click"], Metrics(), budget=ByteBudget(512 * MIB))
    bomb = _unsized_bomb(landing.MAX_UNCOMPRESSED + 8 * MIB)
    tracemalloc.start()
    try:
        with pytest.raises(PoisonEnvelope) as info:
            lander.land(bomb, ATTRS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.reason == "too_large"
    assert peak < landing.MAX_UNCOMPRESSED + 4 * MIB
    assert landing.MAX_UNCOMPRESSED <= 64 * MIB  # was 256 MiB per envelope


def test_a_bomb_waits_for_the_budget_instead_of_allocating() -> None:
    budget = ByteBudget(64 * MIB, timeout=10)
    lander = Lander(MemoryStore(), ["ads_click"], Metrics(), max_uncompressed=8 * MIB, budget=budget)
    bomb = _unsized_bomb(32 * MIB)
    result: list[str] = []

    def land() -> None:
        try:
            lander.land(bomb, ATTRS)
        except PoisonEnvelope as p:
            result.append(p.reason)

    hold = budget.hold(64 * MIB - 1)  # everything but one byte is taken by other landings
    hold.__enter__()
    t = threading.Thread(target=land)
    tracemalloc.start()
    try:
        t.start()
        t.join(0.3)
        assert t.is_alive() and result == []  # waiting, not decompressing
        current, _ = tracemalloc.get_traced_memory()
        assert current < 1 * MIB
    finally:
        tracemalloc.stop()
        hold.__exit__(None, None, None)
    t.join(10)
    assert result == ["too_large"] and budget.used == 0


def test_a_busy_budget_past_its_timeout_nacks_the_message_for_redelivery() -> None:
    budget = ByteBudget(4 * MIB, timeout=0.05)
    store, metrics, dlq = MemoryStore(), Metrics(), FakeDeadLetter()
    sleeps: list[float] = []
    handle = MessageHandler(Lander(store, ["ads_click"], metrics, budget=budget), dlq, metrics, sleep=sleeps.append)
    enc = make_envelope("ads_click", ["a"], H)
    msg = FakeMessage(enc.data, enc.attributes)
    with budget.hold(4 * MIB):
        handle(msg)
    assert msg.calls == ["nack"] and not dlq.published and not store.names()
    assert sleeps == []  # transient: no nack delay
    again = FakeMessage(enc.data, enc.attributes)
    handle(again)  # the redelivery lands
    assert again.calls == ["ack"] and len(store.names()) == 1
