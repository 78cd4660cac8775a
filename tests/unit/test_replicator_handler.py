"""The streaming-pull callback: ack only after landing, dead-letter poison with its reason, nack on store errors."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pytest

from replicator.config import ReplicatorConfig
from replicator.errors import StoreError
from replicator.handler import DROPPED_KEY, MAX_PUBLISH_BYTES, MessageHandler, dead_letter_attributes
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.store import Created, MemoryStore
from replicator.synth import make_envelope
from tests.unit.replicator_support import FakeDeadLetter, FakeMessage, offline_worker

pytestmark = pytest.mark.unit
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)


class FailingStore(MemoryStore):
    def __init__(self, transient: bool) -> None:
        super().__init__()
        self.transient = transient

    def create_if_absent(self, name: str, data: bytes, metadata: Mapping[str, str] | None = None,
                         content_type: str | None = None) -> Created:  # fmt: skip
        raise StoreError("create", name, "boom", transient=self.transient)


def handler(store: MemoryStore, dlq: FakeDeadLetter, *, exactly_once: bool = False) -> tuple[MessageHandler, Metrics]:
    m = Metrics()
    sleeps: list[float] = []
    h = MessageHandler(Lander(store, ["ads_click"], m), dlq, m, exactly_once=exactly_once, sleep=sleeps.append)
    return h, m


def test_landed_message_is_acked_after_the_object_exists() -> None:
    store = MemoryStore()
    h, m = handler(store, FakeDeadLetter())
    enc = make_envelope("ads_click", ["a", "b"], H)
    msg = FakeMessage(enc.data, enc.attributes)
    h(msg)
    assert msg.calls == ["ack"] and len(store.names()) == 1
    assert m.messages_acked._value.get() == 1


def test_exactly_once_ack_is_counted_when_confirmed_without_blocking_the_landing_thread() -> None:
    store = MemoryStore()
    h, m = handler(store, FakeDeadLetter(), exactly_once=True)
    enc = make_envelope("ads_click", ["a", "b"], H)
    msg = FakeMessage(enc.data, enc.attributes)
    h(msg)  # returns although the ack is not confirmed yet (the future is pending)
    assert msg.calls == ["ack_with_response"] and len(store.names()) == 1
    assert m.messages_acked._value.get() == 0 and h.in_flight() == 0
    msg.ack_future.set_result(None)
    assert m.messages_acked._value.get() == 1
    again = FakeMessage(enc.data, enc.attributes)
    h(again)
    again.ack_future.set_exception(RuntimeError("ack expired"))  # harmless: a redelivery answers 412
    assert again.calls == ["ack_with_response"] and len(store.names()) == 1
    assert m.messages_acked._value.get() == 1


def test_poison_is_dead_lettered_with_reason_and_original_attributes_then_acked() -> None:
    dlq = FakeDeadLetter()
    h, m = handler(MemoryStore(), dlq)
    msg = FakeMessage(
        b"\x00garbage", {"logpipe_format": "logpipe.v1.Envelope", "logpipe_compression": "zstd", "x": "1"}
    )
    h(msg)
    assert msg.calls == ["ack"]
    [(data, attrs)] = dlq.published
    assert data == msg.data
    assert attrs["reason"] == "bad_compression" and attrs["original_x"] == "1" and attrs["detail"]
    assert m.dead_lettered.labels("bad_compression")._value.get() == 1


def test_poison_is_nacked_when_the_dead_letter_publish_fails() -> None:
    h, _ = handler(MemoryStore(), FakeDeadLetter(fail=True))
    msg = FakeMessage(b"x", {})
    h(msg)
    assert msg.calls == ["nack"]


@pytest.mark.parametrize("transient", [True, False])
def test_store_error_nacks_and_never_acks(transient: bool) -> None:
    h, m = handler(FailingStore(transient), FakeDeadLetter())
    enc = make_envelope("ads_click", ["a"], H)
    msg = FakeMessage(enc.data, enc.attributes)
    h(msg)
    assert msg.calls == ["nack"]
    kind = "transient_exhausted" if transient else "permanent"
    assert m.land_errors.labels(kind)._value.get() == 1
    assert h.in_flight() == 0 and h.oldest_held() is None


def test_recent_publish_times_outlive_the_message_and_stay_bounded() -> None:
    """A nacked message is no longer held, but its publish time keeps the watermark back until its redelivery can
    arrive; the memory for it is one entry per clock second, whatever the rate."""
    clock = [H + dt.timedelta(hours=2)]
    m = Metrics()
    h = MessageHandler(Lander(FailingStore(transient=True), ["ads_click"], m), FakeDeadLetter(), m,
                       clock=lambda: clock[0], receive_window=120, sleep=lambda _: None)  # fmt: skip
    enc = make_envelope("ads_click", ["a"], H)
    msg = FakeMessage(enc.data, enc.attributes, publish_time=H + dt.timedelta(minutes=59))
    h(msg)
    assert msg.calls == ["nack"] and h.oldest_held() is None
    assert h.oldest_recent() == H + dt.timedelta(minutes=59)
    for i in range(1000):  # 1000 newer messages over 500 s
        clock[0] += dt.timedelta(seconds=0.5)
        h(FakeMessage(enc.data, enc.attributes, message_id=f"n{i}", publish_time=clock[0]))
        assert len(h._recent) <= 121
    assert h.oldest_recent() == clock[0] - dt.timedelta(seconds=119)  # whole seconds; the 13:59 one is forgotten


def test_watermark_stays_behind_a_draining_backlog_for_the_receive_window() -> None:
    """A worker back from an outage drains a backlog: each message is acked at once, so none is *held* when the
    finalizer looks, but the ones it has not started yet are as old. The hour stays open until the window passes."""
    clock = [H + dt.timedelta(hours=1, minutes=15)]
    for window, closable_at_once in ((120.0, False), (0.0, True)):
        cfg = ReplicatorConfig(project="p", bucket="bkt", lateness_seconds=600, receive_window_seconds=window)
        w = offline_worker(cfg, clock=lambda: clock[0])
        store, metrics = MemoryStore(), Metrics()
        handler = MessageHandler(Lander(store, ["ads_click"], metrics), FakeDeadLetter(), metrics,
                                 clock=lambda: clock[0], receive_window=cfg.receive_window_seconds)  # fmt: skip
        w._handlers = [handler]
        enc = make_envelope("ads_click", ["late"], H + dt.timedelta(minutes=30))
        handler(FakeMessage(enc.data, enc.attributes, publish_time=H + dt.timedelta(minutes=65)))  # published 14:05
        assert handler.oldest_held() is None and store.names()  # landed and acked
        p = Partition("ads_click", H)
        assert w.closable(p) is closable_at_once
        clock[0] += dt.timedelta(seconds=121)
        assert w.closable(p)
        clock[0] = H + dt.timedelta(hours=1, minutes=15)


class LimitedDeadLetter(FakeDeadLetter):
    """Refuses what Pub/Sub refuses: more than 100 attributes, a key over 256 bytes, a value over 1024 bytes."""

    def publish(self, data: bytes, attributes: Mapping[str, str]) -> None:
        if len(attributes) > 100:
            raise ValueError(f"{len(attributes)} attributes")
        if any(len(k.encode()) > 256 or len(v.encode()) > 1024 for k, v in attributes.items()):
            raise ValueError("attribute too long")
        super().publish(data, attributes)


def test_poison_with_150_attributes_is_dead_lettered_within_pubsubs_limits() -> None:
    dlq = LimitedDeadLetter()
    h, m = handler(MemoryStore(), dlq)
    msg = FakeMessage(b"\x00garbage", {f"a{i:03d}": str(i) for i in range(150)})
    h(msg)
    assert msg.calls == ["ack"]
    [(_, attrs)] = dlq.published
    assert len(attrs) == 100
    assert attrs["reason"] and attrs["detail"] and attrs["original_message_id"] == "m1"
    kept = sorted(k for k in attrs if k.startswith("original_a"))
    assert kept == [f"original_a{i:03d}" for i in range(96)]  # sorted keys: deterministic
    assert attrs[DROPPED_KEY] == "54"
    assert m.dead_lettered.labels(attrs["reason"])._value.get() == 1


@pytest.mark.parametrize(("n", "kept", "dropped"), [(97, 97, None), (98, 96, "2")])
def test_the_dropped_count_takes_a_slot_only_when_something_was_dropped(n: int, kept: int, dropped: str) -> None:
    msg = FakeMessage(b"x", {f"a{i:03d}": "v" for i in range(n)})
    attrs = dead_letter_attributes(msg, "bad_format", "d")
    assert len(attrs) <= 100 and sum(k.startswith("original_a") for k in attrs) == kept
    assert attrs.get(DROPPED_KEY) == dropped


def test_dead_letter_keys_and_values_are_cut_in_bytes_on_a_character_boundary() -> None:
    msg = FakeMessage(b"x", {"k" * 300: "é" * 1000, "message_id": "spoofed", "ok": "1"}, message_id="real")
    attrs = dead_letter_attributes(msg, "bad_format", "ü" * 2000)
    assert all(len(k.encode()) <= 256 and len(v.encode()) <= 1024 for k, v in attrs.items())
    assert attrs["detail"] == "ü" * 512 and attrs["original_" + "k" * 247] == "é" * 512
    assert attrs["original_message_id"] == "real"  # an original "message_id" attribute cannot overwrite it
    assert attrs["original_ok"] == "1" and attrs[DROPPED_KEY] == "1"


def test_dead_letter_attributes_keep_the_message_within_the_publish_size_limit() -> None:
    data = b"x" * (MAX_PUBLISH_BYTES - 20_000)  # the poison message itself is near Pub/Sub's 10 MB
    msg = FakeMessage(data, {f"a{i:02d}": "v" * 1000 for i in range(50)})
    attrs = dead_letter_attributes(msg, "bad_format", "d")
    size = len(data) + sum(len(k) + len(v) + 10 for k, v in attrs.items())
    assert size <= MAX_PUBLISH_BYTES - 2048
    assert 0 < int(attrs[DROPPED_KEY]) < 50 and "original_a00" in attrs
