"""DurableSink: publish, or spool on failure/timeout, then replay with the same envelope ids."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest
from google.cloud.pubsub_v1.publisher.exceptions import MessageTooLargeError

from service.envelope import MAX_MESSAGE_BYTES, EncodedEnvelope
from service.frontend.errors import NotDurable, SpoolFull
from service.frontend.metrics import Metrics
from service.frontend.publisher import FakePublisher
from service.frontend.sink import DurableSink
from service.frontend.spool import Spool, SpoolEntry

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


def make(
    tmp_path: Path,
    pub: FakePublisher,
    timeout_s: float = 5.0,
    max_bytes: int = 1 << 20,
    spool: Spool | None = None,
    topic_for: Callable[[str], str] = lambda c: "topic",
) -> DurableSink:
    if spool is None:
        spool = Spool(tmp_path / "spool", max_bytes)
        spool.open()
    sink = DurableSink(pub, spool, topic_for, Metrics(), publish_timeout_s=timeout_s, replay_interval_s=0.05)
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


class FlakySpool(Spool):
    """A real spool whose ``read``/``remove``/``quarantine``/``entries`` raise the given errors, once each, first."""

    def __init__(self, directory: Path, errors: dict[str, list[BaseException]]) -> None:
        super().__init__(directory, 1 << 20)
        self.errors = errors
        self.calls: dict[str, int] = {}
        self.unreadable: set[str] = set()  # envelope ids whose read fails every time (a bad sector)

    def _maybe_fail(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        pending = self.errors.get(op)
        if pending:
            raise pending.pop(0)

    def entries(self) -> list[SpoolEntry]:
        self._maybe_fail("entries")
        return super().entries()

    def read(self, entry: SpoolEntry) -> EncodedEnvelope:
        self._maybe_fail("read")
        if entry.envelope_id in self.unreadable:
            raise _eio()
        return super().read(entry)

    def remove(self, entry: SpoolEntry) -> None:
        self._maybe_fail("remove")
        super().remove(entry)

    def quarantine(self, entry: SpoolEntry, folder: str = "corrupt") -> Path:
        self._maybe_fail("quarantine")
        return super().quarantine(entry, folder)


def _spooled(tmp_path: Path, errors: dict[str, list[BaseException]], *envs: EncodedEnvelope) -> FlakySpool:
    """A spool left by a previous run holding ``envs`` (all acked), reopened with injected failures."""
    first = Spool(tmp_path / "spool", 1 << 20)
    first.open()
    for e in envs:
        first.write(e)
    first.close()
    spool = FlakySpool(tmp_path / "spool", {})
    spool.open()
    spool.errors = errors
    return spool


def _eio() -> OSError:
    return OSError(errno.EIO, "Input/output error")


@pytest.mark.parametrize(("op", "stage"), [("read", "read"), ("remove", "remove"), ("entries", "pass")])
def test_replay_survives_os_errors_and_drains(tmp_path: Path, op: str, stage: str) -> None:
    spool = _spooled(tmp_path, {op: [_eio(), OSError(errno.EMFILE, "Too many open files")]}, env(0), env(1), env(2))
    pub = FakePublisher()
    sink = make(tmp_path, pub, spool=spool)
    wait_until(lambda: spool.depth == 0)
    assert spool.calls[op] > 2  # the failures happened, and the replayer kept going after them
    assert set(pub.envelope_ids()) == {"env-0", "env-1", "env-2"}  # nothing acked is lost
    if op == "remove":  # a file whose removal failed is published again (same envelope_id): harmless
        assert len(pub.envelope_ids()) > 3
    assert sink._metrics.replay_errors.labels(stage)._value.get() == 2
    wait_until(lambda: not sink.in_outage)  # and new envelopes are published directly again
    out = Outcomes()
    sink.submit(env(3), out.done_for("env-3"))
    out.wait(1)
    assert pub.envelope_ids()[-1] == "env-3" and spool.depth == 0
    sink.stop()


def test_replay_survives_a_failing_quarantine(tmp_path: Path) -> None:
    spool = _spooled(tmp_path, {"quarantine": [_eio()]}, env(0), env(1))
    spool.entries()[0].path.write_bytes(b"garbage")
    pub = FakePublisher()
    sink = make(tmp_path, pub, spool=spool)
    wait_until(lambda: spool.depth == 0)
    assert pub.envelope_ids() == ["env-1"]
    assert [p.name[17:] for p in (tmp_path / "spool" / "corrupt").iterdir()] == ["env-0.env"]
    sink.stop()


def test_unknown_category_is_quarantined_and_the_rest_drains(tmp_path: Path) -> None:
    gone = EncodedEnvelope("env-1", "retired_cat", b"data1", {"envelope_id": "env-1", "category": "retired_cat"}, 1)
    spool = Spool(tmp_path / "spool", 1 << 20)
    spool.open()
    for e in (env(0), gone, env(2)):
        spool.write(e)
    topics = {"app_log": "topic"}
    pub = FakePublisher()
    sink = make(tmp_path, pub, spool=spool, topic_for=topics.__getitem__)
    wait_until(lambda: spool.depth == 0)
    assert pub.envelope_ids() == ["env-0", "env-2"]  # not blocked behind the unpublishable file
    [kept] = (tmp_path / "spool" / "unknown-category").iterdir()  # moved aside for an operator, never deleted
    assert kept.name.endswith("-env-1.env") and spool.read(_entry(kept)) == gone
    assert sink._metrics.spool_quarantined.labels("unknown_category")._value.get() == 1
    wait_until(lambda: not sink.in_outage)
    sink.stop()


def _entry(path: Path) -> SpoolEntry:
    return SpoolEntry(path, 0, path.stem.partition("-")[2], path.stat().st_size)


def test_an_unreadable_file_does_not_block_the_ones_behind_it(tmp_path: Path) -> None:
    spool = _spooled(tmp_path, {}, env(0), env(1), env(2))
    spool.unreadable = {"env-0"}
    pub = FakePublisher()
    sink = make(tmp_path, pub, spool=spool)
    wait_until(lambda: sorted(pub.envelope_ids()) == ["env-1", "env-2"] and spool.depth == 1)
    assert sink.in_outage and sink._metrics.replay_errors.labels("read")._value.get() >= 1
    spool.unreadable = set()  # the disk recovered: the kept file is published, not lost
    wait_until(lambda: spool.depth == 0 and pub.envelope_ids()[-1] == "env-0")
    sink.stop()


def test_a_failed_replay_publish_keeps_the_file_until_a_later_one_is_confirmed(tmp_path: Path) -> None:
    # G1: the spool file of an acked envelope goes only after Pub/Sub confirmed its replay (mutation audit: a
    # replayer that deleted it after a failed publish survived every unit test).
    s = Spool(tmp_path / "spool", 1 << 20)
    s.open()
    s.write(env(1))
    s.close()
    pub = FakePublisher(mode="fail")
    sink = make(tmp_path, pub)  # replays the leftover file against a failing Pub/Sub
    try:
        wait_until(lambda: pub.attempts >= 3)
        assert [e.envelope_id for e in sink._spool.entries()] == ["env-1"], "deleted although never confirmed"
        pub.release("ok")
        wait_until(lambda: pub.envelope_ids() == ["env-1"] and sink._spool.depth == 0)
    finally:
        sink.stop()


class _TooLargePublisher(FakePublisher):
    """Refuses what the real client refuses synchronously: ``MessageTooLargeError`` (a ValueError) for ``big-*``."""

    def publish(self, topic: str, envelope: EncodedEnvelope) -> Future[str]:
        if envelope.envelope_id.startswith("big-"):
            raise MessageTooLargeError("The message being published would produce too large a publish request")
        return super().publish(topic, envelope)


def test_an_envelope_over_the_pubsub_cap_is_not_durable_and_never_spooled(tmp_path: Path) -> None:
    out = Outcomes()
    pub = FakePublisher()
    sink = make(tmp_path, pub)
    huge = EncodedEnvelope("env-9", "app_log", b"x" * (MAX_MESSAGE_BYTES + 1), {"envelope_id": "env-9"}, 1)
    sink.submit(huge, out.done_for("env-9"))
    assert isinstance(out.results["env-9"], NotDurable)  # its events are not acked
    assert pub.attempts == 0 and sink._spool.depth == 0 and not sink.in_outage
    sink.stop()


def test_a_synchronously_refused_malformed_envelope_is_not_durable_and_the_rest_publishes(tmp_path: Path) -> None:
    out = Outcomes()
    pub = _TooLargePublisher()
    sink = make(tmp_path, pub)
    big = EncodedEnvelope("big-1", "app_log", b"x", {"envelope_id": "big-1"}, 1)
    sink.submit(big, out.done_for("big-1"))
    sink.submit(env(2), out.done_for("env-2"))
    out.wait(2)
    assert isinstance(out.results["big-1"], NotDurable) and out.results["env-2"] is None
    assert sink._spool.depth == 0 and not sink.in_outage and pub.envelope_ids() == ["env-2"]
    sink.stop()


def test_a_spooled_file_the_publisher_refuses_as_malformed_is_set_aside_and_the_rest_drains(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", 1 << 20)
    spool.open()
    big = EncodedEnvelope("big-1", "app_log", b"x", {"envelope_id": "big-1"}, 1)
    for e in (big, env(2)):  # spooled by an earlier version, oldest first
        spool.write(e)
    pub = _TooLargePublisher()
    sink = make(tmp_path, pub, spool=spool)
    wait_until(lambda: spool.depth == 0)
    assert pub.envelope_ids() == ["env-2"]  # not blocked behind it
    [kept] = (tmp_path / "spool" / "unpublishable").iterdir()
    assert kept.name.endswith("-big-1.env")
    assert sink._metrics.spool_quarantined.labels("unpublishable")._value.get() == 1
    wait_until(lambda: not sink.in_outage)
    sink.stop()


def test_a_spool_file_deleted_from_outside_is_forgotten_and_the_outage_ends(tmp_path: Path) -> None:
    spool = _spooled(tmp_path, {}, env(0), env(1))
    spool.entries()[0].path.unlink()  # an operator (or a disk clean-up) removed it behind the front-end's back
    pub = FakePublisher()
    sink = make(tmp_path, pub, spool=spool)
    wait_until(lambda: spool.depth == 0)  # without forgetting it, depth stayed 1 and every envelope was spooled
    assert pub.envelope_ids() == ["env-1"]
    wait_until(lambda: not sink.in_outage)
    sink.stop()
