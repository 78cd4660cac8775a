"""The fresh path's batching on the in-memory store, with a recording fake runner: bounded batches, committed
objects skipped, a pending batch resumed under the same id (so the same job ids), clean-up after commit."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from replicator.bigquery import fresh_rows, names
from replicator.bigquery.committed import Target
from replicator.bigquery.errors import LoadPending
from replicator.bigquery.fresh import BatchLimits, FreshLoader
from replicator.bigquery.jobs import LoadOutcome, LoadSpec
from replicator.bigquery.metrics import LoaderMetrics
from replicator.landing import Lander
from replicator.metrics import Metrics
from replicator.store import MemoryStore
from replicator.synth import make_envelope
from service.catalog import load_catalog

pytestmark = pytest.mark.unit
CAT = load_catalog()
NOW = dt.datetime(2026, 11, 26, 13, 30, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=2)  # the loader's clock: NOW's 60 s slot is closed


class FakeRunner:
    def __init__(self) -> None:
        self.specs: list[LoadSpec] = []
        self.pending = False

    def load(self, spec: LoadSpec) -> LoadOutcome:
        self.specs.append(spec)
        if self.pending:
            raise LoadPending("down")
        return LoadOutcome(names.job_id(spec.job_base, 0), 1, True)


def setup(limits: BatchLimits | None = None) -> tuple[MemoryStore, Lander, FakeRunner, FreshLoader]:
    store = MemoryStore(clock=lambda: NOW)
    lander = Lander(store, [c.name for c in CAT.categories], Metrics())
    fake = FakeRunner()
    kw: dict[str, Any] = dict(store=store, runner=fake, metrics=LoaderMetrics(), target=Target("p", "ds", "b"))
    loader = FreshLoader(
        tier="core", categories=CAT.categories_in("core"), horizon=dt.timedelta(hours=2), clock=lambda: LATER,
        limits=limits, **kw,
    )  # fmt: skip
    return store, lander, fake, loader


def land(lander: Lander, category: str, n: int, prefix: str) -> None:
    enc = make_envelope(category, [f"{prefix}{i}" for i in range(n)], NOW)
    lander.land(enc.data, enc.attributes)


def test_one_job_per_tier_batch_and_committed_objects_are_skipped() -> None:
    store, lander, fake, loader = setup()
    land(lander, "ads_click", 3, "a")
    land(lander, "login_event", 2, "l")
    land(lander, "ads_click", 4, "c")
    committed = frozenset(n for n in store.names() if n.startswith("staging/") and "login_event" in n)
    assert loader.run(committed, frozenset()) == 7
    assert len(fake.specs) == 1 and fake.specs[0].table == "p.ds._fresh_core"
    rows = [r for n in store.names() if n.endswith(".avro") for r in fresh_rows.decode(store.read(n))]
    assert sorted(r["event_id"] for r in rows) == sorted([*(f"a{i}" for i in range(3)), *(f"c{i}" for i in range(4))])
    assert loader.run(committed, frozenset()) == 0 and len(fake.specs) == 1, "nothing new: no job"


def test_batches_are_bounded() -> None:
    _, lander, fake, loader = setup(BatchLimits(max_objects=2, max_bytes=10**9))
    for i in range(5):
        land(lander, "ads_click", 1, f"x{i}-")
    loader.run(frozenset(), frozenset())
    assert [len(s.uris) for s in fake.specs] == [2, 2, 1], "2 objects per batch, one file per object"


def test_a_pending_batch_is_resumed_with_the_same_id_and_new_data_gets_its_own() -> None:
    store, lander, fake, loader = setup()
    land(lander, "ads_click", 3, "a")
    fake.pending = True
    assert loader.run(frozenset(), frozenset()) == 0
    first_base = fake.specs[0].job_base
    land(lander, "ads_click", 2, "b")
    fake.pending = False
    restarted = FreshLoader(
        store=store, runner=fake, metrics=LoaderMetrics(), target=Target("p", "ds", "b"), tier="core",  # type: ignore[arg-type]
        categories=CAT.categories_in("core"), horizon=dt.timedelta(hours=2), clock=lambda: LATER,
    )  # fmt: skip
    assert restarted.run(frozenset(), frozenset()) == 2, "the resumed batch's file was written before: not counted"
    assert fake.specs[1].job_base == first_base, "the recorded batch is resumed first"
    assert fake.specs[1].uris == fake.specs[0].uris
    assert len(fake.specs) == 3 and fake.specs[2].job_base != first_base


def test_batches_are_deleted_once_their_objects_are_committed_and_loaded() -> None:
    store, lander, _, loader = setup()
    land(lander, "ads_click", 3, "a")
    loader.run(frozenset(), frozenset())
    staging = frozenset(n for n in store.names() if n.startswith("staging/"))
    assert any(n.startswith("bq/fresh/core/") for n in store.names())
    loader.run(staging, staging)
    assert not any(n.startswith("bq/fresh/core/") for n in store.names())


def test_objects_of_the_open_slot_wait_and_workers_agree_on_closed_slots() -> None:
    store, lander, fake, _ = setup()
    land(lander, "ads_click", 3, "a")

    def worker(clock: dt.datetime) -> FreshLoader:
        return FreshLoader(
            store=store, runner=fake, metrics=LoaderMetrics(), target=Target("p", "ds", "b"), tier="core",  # type: ignore[arg-type]
            categories=CAT.categories_in("core"), horizon=dt.timedelta(hours=2), clock=lambda: clock,
        )  # fmt: skip

    assert worker(NOW + dt.timedelta(seconds=30)).run(frozenset(), frozenset()) == 0, "slot still open"
    assert fake.specs == []
    worker(LATER).run(frozenset(), frozenset())
    worker(LATER).run(frozenset(), frozenset())  # a second worker that never saw the first one's record
    assert len({s.job_base for s in fake.specs}) == 1, "same closed slot -> same batch -> same job ids"


def test_passes_start_just_after_each_slot_closes() -> None:
    from replicator.bigquery.loader import seconds_to_next_pass

    assert seconds_to_next_pass(now=120.0, interval=60.0, grace=2.0) == 2.0
    assert seconds_to_next_pass(now=122.5, interval=60.0, grace=2.0) == 59.5
    assert seconds_to_next_pass(now=181.0, interval=60.0, grace=2.0) == 1.0


def test_objects_are_converted_ahead_so_the_pass_only_loads() -> None:
    store, lander, fake, _ = setup()
    land(lander, "ads_click", 3, "a")
    clock = [NOW]
    early = FreshLoader(
        store=store, runner=fake, metrics=LoaderMetrics(), target=Target("p", "ds", "b"), tier="core",  # type: ignore[arg-type]
        categories=CAT.categories_in("core"), horizon=dt.timedelta(hours=2), clock=lambda: clock[0],
    )  # fmt: skip
    assert early.convert(frozenset()) == 1 and fake.specs == []
    staging = next(n for n in store.names() if n.startswith("staging/"))
    converted = store.read(names.fresh_object("core", staging))
    assert [r["event_id"] for r in fresh_rows.decode(converted)] == ["a0", "a1", "a2"]
    assert early.convert(frozenset()) == 0, "nothing new"
    clock[0] = LATER  # the slot closes
    assert early.run(frozenset(), frozenset()) == 3
    assert fake.specs[0].uris == (f"gs://b/{names.fresh_object('core', staging)}",)
    assert store.read(names.fresh_object("core", staging)) == converted, "not converted twice"


def test_an_object_committed_before_any_batch_took_it_is_forgotten() -> None:
    """Converted ahead, then consumed by a commit before its slot closed: no batch will ever hold it, so the loader
    must not remember it for the life of the process (G4). Its Avro file stays for the lifecycle rule."""
    store, lander, fake, loader = setup()
    land(lander, "ads_click", 2, "c")
    assert loader.convert(frozenset()) == 1
    staging = frozenset(n for n in store.names() if n.startswith("staging/"))
    assert loader._conv.converted == set(staging)
    assert loader.run(staging, staging) == 0 and fake.specs == []  # committed: nothing for the fresh table
    assert loader._conv.converted == set()
    assert store.stat(names.fresh_object("core", next(iter(staging)))) is not None


def test_an_event_without_a_valid_row_is_skipped_and_the_rest_of_its_object_is_loaded() -> None:
    """An object that landed before landing refused such events: the fresh path shows what finalization will commit
    (the good events), instead of failing the object's conversion on every pass."""
    from replicator.layout import Layout, Partition
    from replicator.synth import make_event
    from service import envelope as envelope_format
    from service.contract import Envelope

    store, _, _, loader = setup()
    hour = NOW.replace(minute=0)
    good, bad = make_event("ads_click", "good-1", NOW), make_event("ads_click", "bad-1", NOW)
    bad.payload = b'{"x": "\xff\xfe"}'  # not UTF-8 in a JSON category
    env = Envelope(envelope_id="old-envelope", category="ads_click", frontend="test")
    env.events.extend([good, bad])
    hour_us = int(hour.timestamp()) * 1_000_000
    enc = envelope_format.encode_serialized(
        env.SerializeToString(), envelope_id="old-envelope", category="ads_click", event_count=2,
        min_event_micros=hour_us, max_event_micros=hour_us,
    )  # fmt: skip
    name = Layout().staging_object(Partition("ads_click", hour), "old-envelope")
    store.create_if_absent(name, enc.data, enc.attributes)
    assert loader.convert(frozenset()) == 1
    rows = fresh_rows.decode(store.read(names.fresh_object("core", name)))
    assert [r["event_id"] for r in rows] == ["good-1"]
