"""Workers share their watermarks through the bucket: an hour closes only when every live worker of its tier is past
its deadline (G3), a dead worker's heartbeat stops counting, and heartbeats are replaced and cleaned up."""

from __future__ import annotations

import datetime as dt

import pytest

from replicator.config import ReplicatorConfig
from replicator.errors import StoreError
from replicator.layout import Partition
from replicator.store import MemoryStore
from replicator.watermarks import SharedWatermark
from replicator.worker import Worker
from tests.unit.replicator_support import HeldHandler, offline_worker

pytestmark = pytest.mark.unit
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
P = Partition("ads_click", H)  # tier core; closable from 14:10 with the default lateness


def worker(store: MemoryStore, clock: list[dt.datetime], writer: str) -> Worker:
    cfg = ReplicatorConfig(project="p", bucket="bkt", writer=writer, lease_extension_seconds=60, heartbeat_seconds=10)
    worker: Worker = offline_worker(cfg, store, lambda: clock[0])
    return worker


def test_an_hour_waits_for_a_message_another_worker_still_holds() -> None:
    store, clock = MemoryStore(), [H + dt.timedelta(hours=1, minutes=15)]
    a, b = worker(store, clock, "host-a:1"), worker(store, clock, "host-b:2")
    a._handlers = [HeldHandler(H + dt.timedelta(minutes=59))]  # type: ignore[list-item]  # a GCS stall on a only
    b._handlers = [HeldHandler(None)]  # type: ignore[list-item]
    a.publish_watermarks()
    b.publish_watermarks()
    assert not a.closable(P)  # its own message
    assert not b.closable(P)  # a's message: without the shared watermark b would close 13:00 and write _SUCCESS
    assert b.closable(Partition("ads_click", H - dt.timedelta(hours=1)))  # earlier hours are unaffected
    a._handlers = [HeldHandler(None)]  # type: ignore[list-item]  # a landed it
    a.publish_watermarks()
    clock[0] += dt.timedelta(seconds=6)  # past b's 5 s cache
    assert b.closable(P)


def test_a_dead_workers_heartbeat_stops_counting() -> None:
    store, clock = MemoryStore(), [H + dt.timedelta(hours=1, minutes=15)]
    a, b = worker(store, clock, "host-a:1"), worker(store, clock, "host-b:2")
    a._handlers = [HeldHandler(H + dt.timedelta(minutes=59))]  # type: ignore[list-item]
    b._handlers = [HeldHandler(None)]  # type: ignore[list-item]
    a.publish_watermarks()  # then a is SIGKILLed: Pub/Sub redelivers its message to b after the lease
    clock[0] += dt.timedelta(seconds=90)  # 3 heartbeats + the 60 s lease extension
    assert not b.closable(P)
    clock[0] += dt.timedelta(seconds=6)  # stale by now, and past b's 5 s cache
    assert b.closable(P)


def test_heartbeats_are_replaced_withdrawn_and_forgotten() -> None:
    store, clock = MemoryStore(), [H]
    mine = SharedWatermark(store, "core", "host-a:1", lambda: clock[0], stale_after=dt.timedelta(seconds=90))
    for minutes in range(3):
        clock[0] = H + dt.timedelta(minutes=minutes)
        mine.publish(H)
    assert len([n for n in store.names() if n.startswith("workers/core/host-a_1/")]) == 1  # only the newest
    other = SharedWatermark(store, "core", "host-b:2", lambda: clock[0], stale_after=dt.timedelta(seconds=90))
    assert other.others() == H
    assert (
        SharedWatermark(store, "bulk", "host-b:2", lambda: clock[0], stale_after=dt.timedelta(seconds=90)).others()
        is None
    )
    clock[0] += dt.timedelta(days=1, minutes=1)
    other.publish(clock[0])  # a's heartbeat is a day old: a is long gone
    assert not any(n.startswith("workers/core/host-a_1/") for n in store.names())
    other.withdraw()
    assert not any(n.startswith("workers/") for n in store.names())


def test_unreadable_heartbeats_keep_the_hour_open() -> None:
    class NoList(MemoryStore):
        def list(self, prefix: str, *, start_offset: str = ""):  # type: ignore[no-untyped-def,override]
            if prefix.startswith("workers/"):
                raise StoreError("list", prefix, "503", transient=True)
            return super().list(prefix, start_offset=start_offset)

    clock = [H + dt.timedelta(hours=2)]
    w = worker(NoList(), clock, "host-a:1")
    assert not w.closable(P)
    w.publish_watermarks()  # logs, never raises
