"""Finalization claims (replicator/claims.py): workers share out the closable partitions instead of all merging the
same one and losing N - 1 commit races.

What must hold (docs/design.md, "Claims"): a worker skips a partition a live peer claims and retries it after the
claim expires; a claim is renewed while a long partition is worked on, so a peer never finds it expired meanwhile;
a claim is released after its partition; a worker whose claim was taken over never deletes the taker's; a create
whose response was lost is recognised as this claim's; and two finalizers running at once commit every partition
once without losing a single race. Claims are advisory: correctness never depends on them (the manifest
precondition settles races), which the e2e concurrency tests check with claims on.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from replicator import generation, records
from replicator.claims import PartitionClaims, holder
from replicator.errors import StoreError
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.manifest import Manifest
from replicator.metrics import Metrics
from replicator.scan import list_manifests
from replicator.store import Created, MemoryStore
from replicator.synth import make_envelope
from service.catalog import load_catalog

pytestmark = pytest.mark.unit

CAT = load_catalog()
NOW = dt.datetime(2026, 11, 26, 15, 10, tzinfo=dt.UTC)
TTL = dt.timedelta(seconds=60)
H1 = dt.datetime(2026, 11, 26, 11, tzinfo=dt.UTC)
H2 = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
P1, P2 = Partition("ads_click", H1), Partition("ads_click", H2)


class Clock:
    def __init__(self, now: dt.datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class HookStore(MemoryStore):
    """A MemoryStore that calls ``on_read`` before each read and counts manifest creates that found the name taken
    (lost commit races)."""

    def __init__(self, clock: Callable[[], dt.datetime] | None = None) -> None:
        super().__init__(clock)
        self.on_read: Callable[[str], None] = lambda name: None
        self.lost_races = 0
        self._count = threading.Lock()

    def read(self, name: str) -> bytes:
        self.on_read(name)
        return super().read(name)

    def create_if_absent(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
    ) -> Created:
        res = super().create_if_absent(name, data, metadata, content_type)
        if not res.created and "/_manifest-" in name:
            with self._count:
                self.lost_races += 1
        return res


def worker(store: HookStore, clock: Callable[[], dt.datetime], name: str, ttl: dt.timedelta | None = TTL) -> Finalizer:
    metrics = Metrics()
    claims = None if ttl is None else PartitionClaims(store, name, ttl, metrics, clock)
    settings = FinalizeSettings(target_file_bytes=10_000, writer=name)
    return Finalizer(store, CAT, metrics, settings, clock=clock, claims=claims)


def land(store: HookStore, hour: dt.datetime, n: int, tag: str = "e", payload: int = 0) -> None:
    lander = Lander(store, ["ads_click"], Metrics())
    for i in range(n):
        env = make_envelope("ads_click", [f"{tag}{hour:%H}-{i}"], hour + dt.timedelta(minutes=5), payload_bytes=payload)
        lander.land(env.data, env.attributes)


def closable(p: Partition) -> bool:
    return True


def claims_of(f: Finalizer, outcome: str) -> float:
    value = f.metrics.registry.get_sample_value("logpipe_replicator_finalize_claims_total", {"outcome": outcome})
    return value or 0.0


def parts(manifests: list[Manifest]) -> list[Partition]:
    return sorted(Partition(m.category, m.partition_hour) for m in manifests)


def claim_names(store: MemoryStore) -> list[str]:
    return [n for n in store.names() if n.startswith("claims/")]


def test_a_partition_a_live_peer_claims_is_skipped_then_taken_over_when_the_claim_expires() -> None:
    store, clock = HookStore(), Clock()
    a, b = worker(store, clock, "a"), worker(store, clock, "b")
    land(store, H1, 3)
    land(store, H2, 3)
    assert a.claims is not None
    held = a.claims.acquire(P1)  # worker a works on 11:00 (and then dies: its claim is never renewed)
    assert held is not None and claim_names(store) == ["claims/ads_click/2026/11/26/11/e00000001"]

    assert parts(b.run_pass(["ads_click"], closable)) == [P2]
    assert claims_of(b, "held_elsewhere") == 1 and claims_of(b, "acquired") == 1

    clock.now += TTL - dt.timedelta(seconds=1)
    assert parts(b.run_pass(["ads_click"], closable)) == [], "still claimed: skipped again"
    clock.now += dt.timedelta(seconds=2)
    assert parts(b.run_pass(["ads_click"], closable)) == [P1], "the expired claim is taken over"
    assert claims_of(b, "taken_over") == 1
    assert claim_names(store) == [], "the taker deleted the stale claim and released its own"


def test_an_expired_claim_of_an_old_hour_is_retried_without_a_full_scan() -> None:
    store, clock = HookStore(), Clock()
    old = dt.datetime(2026, 11, 25, 3, tzinfo=dt.UTC)  # outside the 6 h hot window
    a = worker(store, clock, "a")
    b = Finalizer(
        store,
        CAT,
        Metrics(),
        FinalizeSettings(target_file_bytes=10_000, writer="b", hot_window=dt.timedelta(hours=6)),
        clock=clock,
        claims=PartitionClaims(store, "b", TTL, Metrics(), clock),
    )
    land(store, old, 2)
    assert a.claims is not None and a.claims.acquire(Partition("ads_click", old)) is not None
    assert b.run_pass(["ads_click"], closable) == []  # the first pass is a full scan; the hour is claimed
    clock.now += TTL + dt.timedelta(seconds=1)
    assert parts(b.run_pass(["ads_click"], closable)) == [Partition("ads_click", old)]


def test_claims_are_released_after_each_partition() -> None:
    store, clock = HookStore(), Clock()
    a = worker(store, clock, "a")
    land(store, H1, 2)
    land(store, H2, 2)
    assert parts(a.run_pass(["ads_click"], closable)) == [P1, P2]
    assert claims_of(a, "acquired") == 2 and claim_names(store) == []


def test_a_long_partition_renews_its_claim_so_a_peer_never_finds_it_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    store, clock = HookStore(), Clock()
    a, b = worker(store, clock, "a"), worker(store, clock, "b")
    land(store, H1, 12)
    peer_found: list[bool] = []
    real_decode = generation.decode_landed

    def slow_decode(data: bytes, metadata: Mapping[str, str]) -> Any:
        clock.now += dt.timedelta(seconds=25)  # 12 objects: 300 s of work against a 60 s claim
        assert b.claims is not None
        peer_found.append(b.claims.acquire(P1) is not None)
        return real_decode(data, metadata)

    monkeypatch.setattr(generation, "decode_landed", slow_decode)
    assert parts(a.run_pass(["ads_click"], closable)) == [P1]
    assert len(peer_found) == 12 and not any(peer_found), "the peer found the claim expired mid-partition"
    assert claims_of(b, "held_elsewhere") == 12 and claims_of(a, "lost") == 0
    assert claim_names(store) == []


def test_renewal_moves_to_the_next_epoch_only_when_a_third_of_the_ttl_has_passed() -> None:
    store, clock = HookStore(), Clock()
    a = PartitionClaims(store, "a", TTL, Metrics(), clock)
    claim = a.acquire(P1)
    assert claim is not None
    writes = store.writes
    clock.now += TTL / 3 - dt.timedelta(seconds=1)
    claim.renew_if_due()
    assert store.writes == writes and claim_names(store) == [claim.name]
    clock.now += dt.timedelta(seconds=2)
    claim.renew_if_due()
    assert claim_names(store) == ["claims/ads_click/2026/11/26/11/e00000002"]
    info = store.stat(claim.name)
    assert info is not None and int(info.metadata["expires_ms"]) == int((clock.now + TTL).timestamp() * 1000)


def test_a_worker_whose_claim_was_taken_over_keeps_the_takers_claim() -> None:
    store, clock = HookStore(), Clock()
    a = PartitionClaims(store, "a", TTL, Metrics(), clock)
    b = PartitionClaims(store, "b", TTL, Metrics(), clock)
    mine = a.acquire(P1)
    assert mine is not None
    clock.now += TTL + dt.timedelta(seconds=1)  # a stalled past its ttl
    theirs = b.acquire(P1)
    assert theirs is not None and theirs.epoch == 2
    mine.renew_if_due()
    assert mine.lost and a.metrics.registry.get_sample_value(
        "logpipe_replicator_finalize_claims_total", {"outcome": "lost"}
    )
    mine.release()
    assert claim_names(store) == [theirs.name], "the loser deleted the taker's claim"
    clock.now += dt.timedelta(seconds=1)
    assert a.acquire(P1) is None


class LostResponseStore(HookStore):
    """The first claim create is stored but answered 'exists', as the GCS adapter answers a retry after a response
    lost to a reset (412 on its own object)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next = True

    def create_if_absent(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
    ) -> Created:
        res = super().create_if_absent(name, data, metadata, content_type)
        if name.startswith("claims/") and self.lose_next:
            self.lose_next = False
            return Created(False, res.crc32c, res.size)
        return res


def test_a_claim_whose_create_response_was_lost_is_still_ours() -> None:
    store, clock = LostResponseStore(), Clock()
    claim = PartitionClaims(store, "a", TTL, Metrics(), clock).acquire(P1)
    assert claim is not None and claim.epoch == 1
    assert PartitionClaims(store, "b", TTL, Metrics(), clock).acquire(P1) is None


def test_a_failed_renewal_keeps_the_claim_and_is_retried() -> None:
    store, clock = HookStore(), Clock()
    claim = PartitionClaims(store, "a", TTL, Metrics(), clock).acquire(P1)
    assert claim is not None
    clock.now += TTL / 2
    real = store.create_if_absent

    def failing(*args: object, **kw: object) -> Created:
        raise StoreError("create", "claims/x", "injected", transient=True)

    store.create_if_absent = failing  # type: ignore[method-assign]
    claim.renew_if_due()  # logged, not raised
    assert claim.epoch == 1 and not claim.lost
    store.create_if_absent = real  # type: ignore[method-assign]
    claim.renew_if_due()
    assert claim.epoch == 2 and claim_names(store) == [claim.name]


def test_two_finalizers_at_once_commit_every_partition_once_and_lose_no_race() -> None:
    store = HookStore()
    hours = [dt.datetime(2026, 11, 26, h, tzinfo=dt.UTC) for h in range(3, 9)]
    for h in hours:
        land(store, h, 4)
    store.on_read = lambda name: time.sleep(0.03) if name.startswith("staging/") else None
    finalizers = [worker(store, lambda: dt.datetime.now(dt.UTC), n) for n in ("a", "b")]
    start = threading.Barrier(2)
    results: dict[str, list[Partition]] = {}

    def run(f: Finalizer) -> None:
        start.wait()
        results[f.settings.writer] = parts(f.run_pass(["ads_click"], closable))

    threads = [threading.Thread(target=run, args=(f,)) for f in finalizers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    done = results["a"] + results["b"]
    assert sorted(done) == [Partition("ads_click", h) for h in hours], "each partition committed exactly once"
    assert store.lost_races == 0, "two finalizers merged the same partition"
    assert results["a"] and results["b"], "the partitions were not shared out"
    assert claim_names(store) == []


def test_a_leftover_claim_of_the_same_writer_is_taken_back_at_once(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = HookStore(), Clock()
    a = worker(store, clock, "a")
    land(store, H1, 2)
    assert a.claims is not None and a.claims.acquire(P1) is not None  # never released (a failed delete, say)
    with caplog.at_level("INFO", logger="replicator.claims"):
        assert parts(a.run_pass(["ads_click"], closable)) == [P1]
    assert claims_of(a, "acquired") == 2 and claims_of(a, "taken_over") == 0
    assert not [r for r in caplog.records if "took over" in r.getMessage()]
    assert claim_names(store) == []


def test_a_peer_that_took_the_claim_over_gets_the_partition_and_the_stalled_worker_leaves_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, clock = HookStore(), Clock()
    a, b = worker(store, clock, "a"), worker(store, clock, "b")
    land(store, H1, 6)
    real_decode = generation.decode_landed
    calls = []

    def stall_once(data: bytes, metadata: Mapping[str, str]) -> Any:
        calls.append(1)
        if len(calls) == 2:  # worker a stalls past its ttl; b takes the partition over and commits it
            clock.now += TTL + dt.timedelta(seconds=1)
            monkeypatch.setattr(generation, "decode_landed", real_decode)
            assert parts(b.run_pass(["ads_click"], closable)) == [P1]
            monkeypatch.setattr(generation, "decode_landed", stall_once)
        return real_decode(data, metadata)

    monkeypatch.setattr(generation, "decode_landed", stall_once)
    assert a.run_pass(["ads_click"], closable) == []
    assert claims_of(a, "lost") == 1 and claims_of(b, "taken_over") == 1
    assert len(calls) == 2, "worker a left the partition at its first step after the stall"
    assert store.lost_races == 0 and a.failures == 0
    assert [m.generation for _, m in list_manifests(store, ["ads_click"])] == [1]


def test_a_stopping_worker_starts_no_partition_and_leaves_its_current_one_releasing_the_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, clock = HookStore(), Clock()
    a = worker(store, clock, "a")
    stop = threading.Event()
    a.stopping = stop.is_set
    land(store, H1, 4)
    land(store, H2, 4)
    real_decode = generation.decode_landed

    def stop_midway(data: bytes, metadata: Mapping[str, str]) -> Any:
        stop.set()  # SIGTERM while the first partition is merged
        return real_decode(data, metadata)

    monkeypatch.setattr(generation, "decode_landed", stop_midway)
    assert a.run_pass(["ads_click"], closable) == []
    assert list(list_manifests(store, ["ads_click"])) == [] and claim_names(store) == []
    assert claims_of(a, "acquired") == 1, "the second partition was not started"
    assert a.failures == 0
    b = worker(store, clock, "b")  # another worker takes both at once: no claim left to expire
    assert parts(b.run_pass(["ads_click"], closable)) == [P1, P2]


def test_a_claim_a_failed_create_may_have_stored_is_released() -> None:
    class StoredThenFailed(HookStore):
        def create_if_absent(
            self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
        ) -> Created:
            super().create_if_absent(name, data, metadata, content_type)
            raise StoreError("create", name, "reset after the upload", transient=True)

    store, clock = StoredThenFailed(), Clock()
    with pytest.raises(StoreError):
        PartitionClaims(store, "a", TTL, Metrics(), clock).acquire(P1)
    assert claim_names(store) == [], "a stored claim nobody holds would block the peers for a ttl"


def test_a_peer_claim_from_a_clock_far_ahead_expires_within_a_ttl_of_the_readers_clock() -> None:
    clock = Clock()
    store = HookStore(clock)  # the store's clock is right; worker a's runs an hour ahead
    ahead = Clock(NOW + dt.timedelta(hours=1))
    assert PartitionClaims(store, "a", TTL, Metrics(), ahead).acquire(P1) is not None  # then a dies
    b = PartitionClaims(store, "b", TTL, Metrics(), clock)
    assert b.acquire(P1) is None
    clock.now += TTL + dt.timedelta(seconds=1)
    assert b.acquire(P1) is not None, "a dead worker's claim outlived a ttl by its clock's skew"


def test_a_long_read_of_earlier_generations_renews_the_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    store, clock = HookStore(), Clock()
    a, b = worker(store, clock, "a"), worker(store, clock, "b")
    a.settings = FinalizeSettings(target_file_bytes=1024, writer="a")  # generation 1: many small files
    land(store, H1, 12, payload=3000)
    assert parts(a.run_pass(["ads_click"], closable)) == [P1]
    [(_, g1)] = list_manifests(store, ["ads_click"])
    assert len(g1.files) >= 2
    land(store, H1, 1, tag="late")  # a delta: its finalizer reads generation 1's files for their ids
    a2 = worker(store, clock, "a2")  # a fresh process: no id cache
    peer_found: list[bool] = []
    real = records.decode_rows

    def slow_decode(data: bytes, category: Any) -> Any:
        clock.now += dt.timedelta(seconds=40)  # two files: 80 s against a 60 s claim
        assert b.claims is not None
        peer_found.append(b.claims.acquire(P1) is not None)
        return real(data, category)

    monkeypatch.setattr(records, "decode_rows", slow_decode)
    assert [m.generation for m in a2.run_pass(["ads_click"], closable)] == [2]
    assert len(peer_found) == len(g1.files) and not any(peer_found)


def test_a_stalled_holders_release_keeps_the_claim_of_whoever_came_after() -> None:
    store, clock = HookStore(), Clock()
    a, b, c = (PartitionClaims(store, w, TTL, Metrics(), clock) for w in ("a", "b", "c"))
    stale = a.acquire(P1)
    assert stale is not None
    clock.now += TTL + dt.timedelta(seconds=1)  # a stalls; b takes over, finishes and releases; c claims anew
    taker = b.acquire(P1)
    assert taker is not None
    taker.release()
    fresh = c.acquire(P1)
    assert fresh is not None and fresh.name == stale.name, "epochs restart in an empty folder"
    stale.release()
    assert claim_names(store) == [fresh.name], "the stalled holder deleted a live claim of the same epoch"


def test_long_data_file_uploads_renew_the_claim() -> None:
    store, clock = HookStore(), Clock()
    a, b = worker(store, clock, "a"), worker(store, clock, "b")
    a.settings = FinalizeSettings(target_file_bytes=1024, writer="a")
    lander = Lander(store, ["ads_click"], Metrics())
    one = make_envelope("ads_click", [f"u{i}" for i in range(60)], H1 + dt.timedelta(minutes=5), payload_bytes=3000)
    lander.land(one.data, one.attributes)  # one staging object, many data files: no staging read in between
    peer_found: list[bool] = []
    real_create = store.create_if_absent

    def slow_upload(name: str, data: bytes, *args: Any, **kw: Any) -> Created:
        res = real_create(name, data, *args, **kw)
        if "/part-g" in name:
            clock.now += dt.timedelta(seconds=40)
            assert b.claims is not None
            peer_found.append(b.claims.acquire(P1) is not None)
        return res

    store.create_if_absent = slow_upload  # type: ignore[method-assign]
    assert parts(a.run_pass(["ads_click"], closable)) == [P1]
    assert len(peer_found) >= 3 and not any(peer_found), "the claim expired during the uploads"


def test_partitions_shows_the_live_claims_holder() -> None:
    """``logpipe partitions`` reports ``claimed_by`` through ``claims.holder``: live, expired, released."""
    store, clock = HookStore(), Clock()
    a = PartitionClaims(store, "host-a:7", TTL, Metrics(), clock)
    assert holder(store, P1, clock.now) is None
    claim = a.acquire(P1)
    assert claim is not None
    assert holder(store, P1, clock.now) == ("host-a:7", clock.now + TTL)
    clock.now += TTL / 2
    claim.renew_if_due()
    assert holder(store, P1, clock.now) == ("host-a:7", clock.now + TTL), "the renewed epoch is the claim"
    clock.now += TTL
    assert holder(store, P1, clock.now) is None, "expired"
    claim.release()
    assert holder(store, P1, clock.now) is None
