"""DurableSink: publish, or spool on failure/timeout, then replay with the same envelope ids."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

from service.envelope import EncodedEnvelope
from service.frontend.errors import SpoolFull
from service.frontend.metrics import Metrics
from service.frontend.publisher import FakePublisher
from service.frontend.sink import DurableSink
from service.frontend.spool import Spool

pytestmark = pytest.mark.unit


def env(i: int) -> EncodedEnvelope:
    return EncodedEnvelope(f"env-{i}", "app_log", b"data%d" % i, {"envelope_id": f"env-{i}"}, 1)


class Outcomes:
    def __init__(self) -> None:
        self.results: dict[str, BaseException | None] = {}
        self.cv = threading.Condition()

    def done_for(self, envelope_id: str) -> Callable[[BaseException | None], None]:
        def done(error: BaseException | None) -> None:
            with self.cv:
                assert envelope_id not in self.results, "done called twice"
                self.results[envelope_id] = error
                self.cv.notify_all()

        return done

    def wait(self, n: int, timeout: float = 10) -> None:
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.results) >= n, timeout)


def make(tmp_path: Path, pub: FakePublisher, timeout_s: float = 5.0, max_bytes: int = 1 << 20) -> DurableSink:
    spool = Spool(tmp_path / "spool", max_bytes)
    spool.open()
    sink = DurableSink(pub, spool, lambda c: "topic", Metrics(), publish_timeout_s=timeout_s, replay_interval_s=0.05)
    sink.start()
    return sink


def wait_until(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_confirmed_publish_is_durable(tmp_path: Path) -> None:
    pub, out = FakePublisher(), Outcomes()
    sink = make(tmp_path, pub)
    sink.submit(env(1), out.done_for("env-1"))
    out.wait(1)
    assert out.results == {"env-1": None} and pub.envelope_ids() == ["env-1"]
    sink.stop()


def test_failed_publish_spools_acks_then_replays_same_ids(tmp_path: Path) -> None:
    pub, out = FakePublisher(mode="fail"), Outcomes()
    sink = make(tmp_path, pub)
    for i in range(3):
        sink.submit(env(i), out.done_for(f"env-{i}"))
    out.wait(3)
    assert all(err is None for err in out.results.values())  # durable in the spool: acked
    assert sink.in_outage and pub.published == []
    pub.release("ok")  # Pub/Sub is back
    wait_until(lambda: sink._spool.depth == 0)
    assert sorted(pub.envelope_ids()) == ["env-0", "env-1", "env-2"]
    assert pub.published[0][1] == env(0)  # byte-identical body and attributes
    wait_until(lambda: not sink.in_outage)
    sink.stop()


def test_unconfirmed_publish_times_out_into_spool(tmp_path: Path) -> None:
    pub, out = FakePublisher(mode="stall"), Outcomes()
    sink = make(tmp_path, pub, timeout_s=0.3)
    t0 = time.monotonic()
    sink.submit(env(1), out.done_for("env-1"))
    out.wait(1)
    assert out.results["env-1"] is None and time.monotonic() - t0 < 3
    assert [e.envelope_id for e in sink._spool.entries()] == ["env-1"]  # still unconfirmed: kept
    sink.stop()


def test_full_spool_fails_the_envelope(tmp_path: Path) -> None:
    pub, out = FakePublisher(mode="fail"), Outcomes()
    sink = make(tmp_path, pub, max_bytes=10)
    sink.submit(env(1), out.done_for("env-1"))
    out.wait(1)
    assert isinstance(out.results["env-1"], SpoolFull)
    sink.stop()


def test_leftover_spool_is_replayed_on_start(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 1 << 20)
    spool.open()
    spool.write(env(7))
    spool.close()
    pub = FakePublisher()
    sink = make(tmp_path, pub)
    wait_until(lambda: pub.envelope_ids() == ["env-7"])
    wait_until(lambda: sink._spool.depth == 0)
    sink.stop()


def test_drain_spools_what_is_still_unconfirmed(tmp_path: Path) -> None:
    pub, out = FakePublisher(mode="stall"), Outcomes()
    sink = make(tmp_path, pub, timeout_s=60)
    sink.submit(env(1), out.done_for("env-1"))
    assert sink.drain(0.2)
    assert out.results == {"env-1": None}
    assert [e.envelope_id for e in sink._spool.entries()] == ["env-1"]
    sink.stop()


class _RaisingPublisher(FakePublisher):
    def publish(self, topic: str, envelope: EncodedEnvelope) -> Future[str]:
        raise RuntimeError("client closed")


def test_synchronous_publish_error_spools(tmp_path: Path) -> None:
    out = Outcomes()
    sink = make(tmp_path, _RaisingPublisher())
    sink.submit(env(1), out.done_for("env-1"))
    out.wait(1)
    assert out.results == {"env-1": None}
    sink.stop()
