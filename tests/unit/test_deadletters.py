"""``replicator.deadletters``: restoring a dead letter's original attributes, and the replay order (G1: a dead letter is
acked only after its republish is confirmed; everything not acked is released). Fakes of the Pub/Sub clients."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from replicator.deadletters import FORWARDED, DeadLetterQueue, describe, original_attributes
from replicator.handler import dead_letter_attributes

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)


def msg(mid: str, data: bytes, attrs: dict[str, str]) -> Any:
    return SimpleNamespace(message_id=mid, data=data, attributes=attrs, publish_time=NOW)


def forwarded(mid: str, envelope_id: str) -> Any:
    return msg(
        mid,
        b"env-" + envelope_id.encode(),
        {
            "category": "ads_click",
            "envelope_id": envelope_id,
            "CloudPubSubDeadLetterSourceDeliveryCount": "100",
            "CloudPubSubDeadLetterSourceSubscription": "logpipe-core-replicator",
        },
    )


def poison(mid: str, envelope_id: str) -> Any:
    original = msg("orig-" + mid, b"junk", {"category": "ads_click", "envelope_id": envelope_id})
    return msg(mid, b"junk", dead_letter_attributes(original, "undecodable", "not zstd"))


@dataclass
class FakeSubscriber:
    """Serves ``messages`` to ``pull`` until they are acked; records every call in ``log``."""

    messages: list[Any]
    log: list[tuple[str, Any]] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)
    _n: int = 0

    def pull(self, subscription: str, max_messages: int, timeout: float) -> Any:
        live = [m for m in self.messages if m.message_id not in self.acked]
        if not live:
            raise gexc.DeadlineExceeded("no messages")
        self._n += 1
        batch = live[:max_messages]
        return SimpleNamespace(
            received_messages=[SimpleNamespace(ack_id=f"{m.message_id}#{self._n}", message=m) for m in batch]
        )

    def acknowledge(self, subscription: str, ack_ids: list[str]) -> None:
        self.log.append(("ack", tuple(ack_ids)))
        self.acked.update(a.split("#")[0] for a in ack_ids)

    def modify_ack_deadline(self, subscription: str, ack_ids: list[str], ack_deadline_seconds: int) -> None:
        self.log.append(("modack", (tuple(sorted(ack_ids)), ack_deadline_seconds)))


@dataclass
class FakePublisher:
    log: list[tuple[str, Any]]
    fail_on: set[str] = field(default_factory=set)
    published: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)

    def publish(self, topic: str, data: bytes, **attrs: str) -> Future[str]:
        f: Future[str] = Future()
        if attrs.get("envelope_id") in self.fail_on:
            f.set_exception(gexc.ServiceUnavailable("publish failed"))
        else:
            self.published.append((data, attrs))
            self.log.append(("publish", attrs.get("envelope_id")))
            f.set_result("1")
        return f


def test_original_attributes_are_restored_for_both_kinds_of_dead_letter() -> None:
    assert original_attributes(forwarded("1", "e1").attributes) == {"category": "ads_click", "envelope_id": "e1"}
    assert original_attributes(poison("2", "e2").attributes) == {"category": "ads_click", "envelope_id": "e2"}
    cut = dict(poison("3", "e3").attributes, dropped_attributes="2")
    assert original_attributes(cut) is None  # some were dropped at dead-lettering: never replayed half-restored


def test_describe_names_the_reason_of_each_kind() -> None:
    f, p = describe(forwarded("1", "e1")), describe(poison("2", "e2"))
    assert (f.reason, f.envelope_id, f.category, f.attempts) == (FORWARDED, "e1", "ads_click", "100")
    assert "100 failed deliveries" in f.detail
    assert (p.reason, p.detail, p.envelope_id, p.original_message_id) == ("undecodable", "not zstd", "e2", "orig-2")


def test_peek_acks_nothing_and_releases_everything_it_held() -> None:
    sub = FakeSubscriber([forwarded("1", "e1"), poison("2", "e2")])
    letters = DeadLetterQueue(sub, "dls").peek(10)
    assert [d.envelope_id for d in letters] == ["e1", "e2"]
    assert not [c for c in sub.log if c[0] == "ack"]
    assert sub.log[-1][0] == "modack" and sub.log[-1][1][1] == 0  # released for the next reader


def test_replay_acks_each_dead_letter_only_after_its_publish_is_confirmed() -> None:
    sub = FakeSubscriber([forwarded("1", "e1"), poison("2", "e2"), forwarded("3", "e3")])
    pub = FakePublisher(sub.log)
    result = DeadLetterQueue(sub, "dls", publisher=pub, topic_path="t").replay(10, {FORWARDED})
    assert [d.envelope_id for d in result.replayed] == ["e1", "e3"]
    assert [d.envelope_id for d in result.skipped] == ["e2"]
    assert pub.published == [
        (b"env-e1", {"category": "ads_click", "envelope_id": "e1"}),
        (b"env-e3", {"category": "ads_click", "envelope_id": "e3"}),
    ]
    order = [c for c in sub.log if c[0] in ("publish", "ack")]
    assert order == [("publish", "e1"), ("ack", ("1#1",)), ("publish", "e3"), ("ack", ("3#1",))]
    assert sub.acked == {"1", "3"}
    kind, (ack_ids, seconds) = sub.log[-1]
    assert kind == "modack" and seconds == 0 and {a.split("#")[0] for a in ack_ids} == {"2"}  # released, not acked


def test_a_failed_publish_acks_nothing_and_leaves_the_dead_letter() -> None:
    sub = FakeSubscriber([forwarded("1", "e1"), forwarded("2", "e2")])
    pub = FakePublisher(sub.log, fail_on={"e2"})
    with pytest.raises(gexc.ServiceUnavailable):
        DeadLetterQueue(sub, "dls", publisher=pub, topic_path="t").replay(10, ())
    assert sub.acked == {"1"}
    kind, (ack_ids, seconds) = sub.log[-1]
    assert kind == "modack" and seconds == 0 and {a.split("#")[0] for a in ack_ids} == {"2"}


def test_replay_never_sends_a_dead_letter_whose_attributes_were_cut() -> None:
    cut = poison("1", "e1")
    cut.attributes = dict(cut.attributes, dropped_attributes="1")
    sub = FakeSubscriber([cut])
    pub = FakePublisher(sub.log)
    result = DeadLetterQueue(sub, "dls", publisher=pub, topic_path="t").replay(10, ())
    assert [d.message_id for d in result.unrestorable] == ["1"] and pub.published == [] and sub.acked == set()


def test_limit_bounds_the_dead_letters_looked_at() -> None:
    sub = FakeSubscriber([forwarded(str(i), f"e{i}") for i in range(10)])
    pub = FakePublisher(sub.log)
    result = DeadLetterQueue(sub, "dls", publisher=pub, topic_path="t").replay(3, ())
    assert len(result.replayed) == 3 and len(sub.acked) == 3
    assert len(DeadLetterQueue(sub, "dls").peek(4)) == 4
