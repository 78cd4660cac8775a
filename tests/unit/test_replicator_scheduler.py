"""G3: the watermark sees a message from the moment the streaming pull's scheduler queues it, not only once its
callback runs; and a worker that has started nothing yet closes nothing until it has pulled for ``receive_window``."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from replicator.config import ReplicatorConfig
from replicator.handler import MessageHandler
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.scheduler import TrackingScheduler, prestarted
from replicator.store import Created, MemoryStore
from replicator.synth import make_envelope
from tests.unit.replicator_support import FakeDeadLetter, FakeMessage, offline_worker

pytestmark = pytest.mark.unit
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
NOW = H + dt.timedelta(hours=1, minutes=15)  # 13:00's deadline (14:10) has passed


class GatedStore(MemoryStore):
    """Each create waits for ``gate``: the landing thread stays busy while the test looks."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def create_if_absent(self, name: str, data: bytes, metadata: Mapping[str, str] | None = None,
                         content_type: str | None = None) -> Created:  # fmt: skip
        self.entered.set()
        assert self.gate.wait(10)
        return super().create_if_absent(name, data, metadata, content_type)


def _setup() -> tuple[GatedStore, MessageHandler, TrackingScheduler]:
    store, m = GatedStore(), Metrics()
    h = MessageHandler(Lander(store, ["ads_click"], m), FakeDeadLetter(), m, clock=lambda: NOW, receive_window=120)
    return store, h, TrackingScheduler(prestarted(1, "t-sched"), h)


def _message(message_id: str, published: dt.datetime) -> FakeMessage:
    enc = make_envelope("ads_click", [message_id], H + dt.timedelta(minutes=30))
    return FakeMessage(enc.data, enc.attributes, message_id=message_id, publish_time=published)


def test_a_queued_message_holds_the_watermark_before_its_callback_starts() -> None:
    store, h, sched = _setup()
    w = offline_worker(ReplicatorConfig(project="p", bucket="bkt", receive_window_seconds=120), clock=lambda: NOW)
    w._handlers = [h]
    running = _message("running", NOW - dt.timedelta(seconds=5))
    queued = _message("queued", H + dt.timedelta(minutes=59))  # published 13:59: before 13:00's deadline
    sched.schedule(h, running)
    assert store.entered.wait(5)  # the only landing thread is busy with `running`
    sched.schedule(h, queued)
    assert h.oldest_recent() == running.publish_time  # `queued` has not started...
    assert h.oldest_held() == queued.publish_time  # ...but it is held from the moment it was queued
    assert not w.closable(Partition("ads_click", H))  # so 13:00 stays open (without `queued` it would close)
    store.gate.set()
    deadline = time.monotonic() + 10
    while h.in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)
    sched.shutdown(await_msg_callbacks=True)
    assert running.calls == ["ack"] and queued.calls == ["ack"]
    assert h.oldest_held() is None and h.in_flight() == 0


def test_messages_dropped_by_shutdown_are_no_longer_held() -> None:
    store, h, sched = _setup()
    sched.schedule(h, _message("running", NOW))
    assert store.entered.wait(5)
    queued = _message("queued", H + dt.timedelta(minutes=59))
    sched.schedule(h, queued)
    assert h.in_flight() == 2
    releaser = threading.Timer(0.2, store.gate.set)
    releaser.start()
    dropped = sched.shutdown(await_msg_callbacks=True)
    releaser.join()
    assert dropped == [queued] and queued.calls == []  # the client nacks what shutdown returns
    assert h.in_flight() == 0 and h.oldest_held() is None


def test_a_message_refused_by_a_shut_down_executor_is_not_held() -> None:
    _, h, sched = _setup()
    sched.shutdown()
    msg = _message("late", H)
    with pytest.warns(RuntimeWarning):
        sched.schedule(h, msg)
    assert h.in_flight() == 0 and msg.calls == []


def test_a_started_worker_closes_nothing_until_it_started_a_message_or_pulled_for_the_receive_window() -> None:
    """Back from an outage with a backlog (or with a dead worker's messages not redelivered yet), a worker that has
    received nothing cannot tell that from an empty subscription."""
    clock = [NOW]
    cfg = ReplicatorConfig(project="p", bucket="bkt", receive_window_seconds=120)
    p = Partition("ads_click", H)
    w = offline_worker(cfg, clock=lambda: clock[0])
    assert w.closable(p)  # never started: the guard does not apply (offline tools and tests)
    store, metrics = MemoryStore(), Metrics()
    h = MessageHandler(Lander(store, ["ads_click"], metrics), FakeDeadLetter(), metrics, clock=lambda: clock[0],
                       receive_window=120)  # fmt: skip
    w._handlers, w._handler_of = [h], {"core": h}
    w._pulling_since = NOW  # what start() records
    assert not w.closable(p)
    clock[0] += dt.timedelta(seconds=119)
    assert not w.closable(p)
    clock[0] += dt.timedelta(seconds=1)
    assert w.closable(p)  # pulled for a whole window: an empty subscription

    clock[0] = NOW
    h(_message("fresh", NOW))  # the first message started is new: the backlog, if any, would show in P_recent
    assert w.closable(p)


def test_the_startup_guard_is_off_with_a_zero_receive_window() -> None:
    w = offline_worker(ReplicatorConfig(project="p", bucket="bkt", receive_window_seconds=0), clock=lambda: NOW)
    h = MessageHandler(Lander(MemoryStore(), ["ads_click"], Metrics()), FakeDeadLetter(), Metrics(), clock=lambda: NOW)
    w._handlers, w._handler_of, w._pulling_since = [h], {"core": h}, NOW
    assert w.closable(Partition("ads_click", H))


def test_the_startup_guard_is_per_tier() -> None:
    """One worker pulls both tiers; a first message on ``core`` says nothing about ``bulk``'s undelivered backlog."""
    cfg = ReplicatorConfig(project="p", bucket="bkt", receive_window_seconds=120)
    w = offline_worker(cfg, clock=lambda: NOW, tiers=("core", "bulk"))
    handlers = {
        tier: MessageHandler(
            Lander(MemoryStore(), cats, Metrics()), FakeDeadLetter(), Metrics(), clock=lambda: NOW, receive_window=120
        )
        for tier, cats in (("core", ["ads_click"]), ("bulk", ["app_log"]))
    }
    w._handlers, w._handler_of, w._pulling_since = list(handlers.values()), handlers, NOW
    handlers["core"](_message("fresh", NOW))
    assert w.closable(Partition("ads_click", H))
    assert not w.closable(Partition("app_log", H)), "bulk has delivered nothing yet"


def _stopping_worker(store: MemoryStore, writer: str, h: MessageHandler) -> Any:
    cfg = ReplicatorConfig(project="p", bucket="bkt", writer=writer, receive_window_seconds=120, drain_timeout=1)
    w = offline_worker(cfg, store, clock=lambda: NOW)
    w._handlers, w._handler_of = [h], {"core": h}
    return w


@pytest.mark.parametrize("queued_at_stop", [True, False])
def test_a_worker_stopping_with_dropped_messages_leaves_a_heartbeat_that_holds_them(queued_at_stop: bool) -> None:
    """SIGTERM drops (nacks) the queued messages. Until Pub/Sub redelivers them, the other workers must not close
    their hour: the stopping worker's last heartbeat holds their publish time instead of being withdrawn."""
    store = MemoryStore()
    gated, h, sched = _setup()
    a = _stopping_worker(store, "host-a:1", h)
    a.publish_watermarks()
    sched.schedule(h, _message("running", NOW))
    assert gated.entered.wait(5)
    if queued_at_stop:
        sched.schedule(h, _message("queued", H + dt.timedelta(minutes=59)))  # 13:00's, published before 14:10
    releaser = threading.Timer(0.2, gated.gate.set)
    releaser.start()
    sched.shutdown(await_msg_callbacks=True)  # what cancelling the streaming pull does
    releaser.join()
    a.stop()
    other = MessageHandler(Lander(MemoryStore(), ["ads_click"], Metrics()), FakeDeadLetter(), Metrics(),
                           clock=lambda: NOW)  # fmt: skip
    b = _stopping_worker(store, "host-b:2", other)
    assert b.closable(Partition("ads_click", H)) is not queued_at_stop
