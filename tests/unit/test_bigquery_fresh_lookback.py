"""``convert`` lists each staging hour from the UUIDv7 prefix of ``clock() - convert_lookback`` instead of whole: it
converts the objects of recent envelope ids only, an object with an older id is left to the pass (F2 lists whole open
hours) and loaded once all the same; ``uuid7_lower_bound`` bounds exactly the ids made at or after an instant; and
``logpipe load --fresh-convert-lookback-seconds`` reaches the fresh loader (default 120 s, 0 = whole hours)."""

from __future__ import annotations

import datetime as dt
import re
import types
import uuid
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from replicator.bigquery import fresh_rows, names
from replicator.bigquery.committed import Target
from replicator.bigquery.fresh import FreshLoader
from replicator.bigquery.loader import Loader, LoaderConfig
from replicator.bigquery.metrics import LoaderMetrics
from replicator.layout import Layout, Partition
from replicator.store import MemoryStore, ObjectInfo
from replicator.synth import make_envelope
from service.catalog import load_catalog
from service.cli import app
from service.client import ids
from service.client.ids import uuid7_lower_bound, uuid7_str, uuid7_unix_ms
from tests.unit.test_bigquery_committed import FakeClient, FakeRunner

pytestmark = pytest.mark.unit
CAT = load_catalog()
NOW = dt.datetime(2026, 11, 26, 13, 30, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=2)  # NOW's 60 s slot is closed
LOOKBACK = dt.timedelta(minutes=10)
LAYOUT = Layout()


class RecordingStore(MemoryStore):
    """The in-memory store, recording ``(prefix, start_offset)`` of every listing under ``staging/``."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.listed: list[tuple[str, str]] = []

    def list(self, prefix: str, *, start_offset: str = "") -> Iterator[ObjectInfo]:
        if prefix.startswith("staging/"):
            self.listed.append((prefix, start_offset))
        return super().list(prefix, start_offset=start_offset)


def envelope_id(made: dt.datetime) -> str:
    """A canonical UUIDv7 with ``made``'s millisecond (random below it), as a front-end makes at that time."""
    ms = (made - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    value = ms << 80 | 0x7 << 76 | 0b10 << 62 | uuid.uuid4().int & ((1 << 62) - 1)
    eid = str(uuid.UUID(int=value))
    assert uuid7_unix_ms(eid) == ms
    return eid


def land(store: MemoryStore, event_ids: list[str], event_time: dt.datetime, made: dt.datetime) -> str:
    """One staging object of ``ads_click`` in ``event_time``'s hour, whose envelope id was made at ``made``."""
    eid = envelope_id(made)
    enc = make_envelope("ads_click", event_ids, event_time, envelope_id=eid)
    name = LAYOUT.staging_object(Partition.of("ads_click", event_time), eid)
    assert store.create_if_absent(name, enc.data, enc.attributes).created
    return name


def fresh_loader(store: MemoryStore, clock: list[dt.datetime], runner: FakeRunner | None = None) -> FreshLoader:
    return FreshLoader(
        store=store, runner=runner or FakeRunner(), metrics=LoaderMetrics(), target=Target("p", "ds", "b"),  # type: ignore[arg-type]
        tier="core", categories=CAT.categories_in("core"), horizon=dt.timedelta(hours=2), clock=lambda: clock[0],
        convert_lookback=LOOKBACK,
    )  # fmt: skip


def expected_offset(prefix: str, since: dt.datetime) -> str:
    """``prefix`` + the first 48 bits (Unix ms) of a UUIDv7 made at ``since``, written independently of the helper."""
    ms = f"{int(since.timestamp() * 1000):012x}"
    return f"{prefix}{ms[:8]}-{ms[8:]}"


def test_convert_lists_each_hour_from_the_lookback_and_converts_the_recent_objects() -> None:
    store = RecordingStore()
    recent = land(store, ["r1", "r2"], NOW, made=NOW - dt.timedelta(minutes=1))
    late = land(store, ["l1"], NOW - dt.timedelta(minutes=40), made=NOW - dt.timedelta(minutes=5))  # previous hour
    old = land(store, ["o1"], NOW, made=NOW - LOOKBACK - dt.timedelta(milliseconds=1))
    loader = fresh_loader(store, [NOW])
    assert loader.convert(frozenset()) == 2
    hours = [
        f"staging/{c.name}/{h:%Y/%m/%d/%H}/" for c in CAT.categories_in("core") for h in (NOW.replace(hour=12), NOW)
    ]
    assert sorted(store.listed) == sorted((p, expected_offset(p, NOW - LOOKBACK)) for p in hours)
    assert loader._conv.converted == {recent, late}
    assert store.stat(names.fresh_object("core", old)) is None, "older than the lookback: left to the pass"

    store.listed.clear()
    whole = FreshLoader(
        store=store, runner=FakeRunner(), metrics=LoaderMetrics(), target=Target("p", "ds", "b"),  # type: ignore[arg-type]
        tier="core", categories=CAT.categories_in("core"), horizon=dt.timedelta(hours=2), clock=lambda: NOW,
    )  # fmt: skip
    whole.convert(frozenset())
    assert whole._conv.converted == {recent, late, old}, "no lookback (the default): whole hours, as before"
    assert sorted(store.listed) == sorted((p, "") for p in hours)


def test_an_object_the_lookback_skips_is_loaded_by_the_next_pass_once() -> None:
    """A spool replay: its envelope id is an hour old, its object lands now in the open hour."""
    store, runner, clock = RecordingStore(), FakeRunner(), [NOW]
    recent = land(store, ["r1", "r2"], NOW, made=NOW - dt.timedelta(seconds=3))
    replayed = land(store, ["p1", "p2"], NOW, made=NOW - dt.timedelta(hours=1))
    loader = fresh_loader(store, clock, runner)
    assert loader.convert(frozenset()) == 1 and loader._conv.converted == {recent}
    assert store.stat(names.fresh_object("core", replayed)) is None
    clock[0] = LATER
    assert loader.run(frozenset(), frozenset()) == 4, "F2 lists the whole open hour: the pass converts the replay"
    (spec,) = runner.specs
    assert sorted(spec.uris) == sorted(f"gs://b/{names.fresh_object('core', n)}" for n in (recent, replayed))
    rows = [r for u in spec.uris for r in fresh_rows.decode(store.read(u.removeprefix("gs://b/")))]
    assert sorted(r["event_id"] for r in rows) == ["p1", "p2", "r1", "r2"], "each event once"
    assert loader.convert(frozenset()) == 0 and loader.run(frozenset(), frozenset()) == 0 and len(runner.specs) == 1


@pytest.fixture
def ids_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """``uuid7_str`` reads its clock (ns) from the yielded list, from a fresh process state (no earlier id)."""
    now_ns = [0]
    monkeypatch.setattr(ids, "time", types.SimpleNamespace(time_ns=lambda: now_ns[0]))
    monkeypatch.setattr(ids, "_last_ms", 0)
    monkeypatch.setattr(ids, "_counter", 0)
    yield now_ns


@pytest.mark.parametrize(
    "at",
    [
        NOW,
        NOW + dt.timedelta(microseconds=1),
        NOW + dt.timedelta(microseconds=999),
        NOW + dt.timedelta(microseconds=123_456),
        dt.datetime(2026, 11, 26, 13, 29, 59, 999_999, tzinfo=dt.UTC),
        dt.datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=dt.UTC),
        dt.datetime(2000, 2, 29, 23, 59, 59, 999_000, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.datetime(9000, 1, 1, tzinfo=dt.UTC),
    ],
)
def test_the_lower_bound_admits_every_uuid7_made_at_or_after_and_none_made_a_millisecond_before(
    at: dt.datetime, ids_at: list[int]
) -> None:
    bound = uuid7_lower_bound(at)
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}", bound)
    at_ns = (at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000
    ids_at[0] = at_ns - 1_000_000
    before = uuid7_str()
    assert before < bound, f"{before} made 1 ms before {at}"
    ids_at[0] = at_ns
    made = [uuid7_str() for _ in range(5000)]  # the counter wraps and borrows the next millisecond
    for offset_ns in (1, 999_999, 1_000_000, 60 * 10**9, 86_400 * 10**9):
        ids_at[0] = at_ns + offset_ns
        made += [uuid7_str() for _ in range(3)]
    assert all(m >= bound for m in made)
    assert made[0].startswith(bound), "the id made at ``at`` has the bound as its prefix"


def test_the_lower_bound_admits_real_time_ids_and_floors_before_1970(ids_at: list[int]) -> None:
    now = dt.datetime.now(dt.UTC)
    ids_at[0] = (now - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000
    assert uuid7_str() >= uuid7_lower_bound(now)
    assert uuid7_lower_bound(dt.datetime(1969, 12, 31, tzinfo=dt.UTC)) == "00000000-0000"


def invoke_load(monkeypatch: pytest.MonkeyPatch, *options: str) -> LoaderConfig:
    """``logpipe load --once`` with ``options``: the config it runs the loader with (not run)."""
    got: list[LoaderConfig] = []
    monkeypatch.setattr("replicator.bigquery.loader.run_loader", lambda config, *a, **k: got.append(config))
    monkeypatch.setattr("replicator.commands.setup_logging", lambda: None)
    monkeypatch.setattr("signal.signal", lambda *a: None)
    result = CliRunner().invoke(app, ["load", "--once", "--bucket", "b", "--project", "p", *options])
    assert result.exit_code == 0, result.output
    (config,) = got
    return config


def converted_offsets(config: LoaderConfig) -> set[str]:
    """The start offsets of one ``convert_once`` of a loader built from ``config``, with its prefix removed."""
    store = RecordingStore()
    Loader(config, CAT, FakeClient(), store, clock=lambda: NOW).convert_once()
    assert store.listed
    return {offset.removeprefix(prefix) for prefix, offset in store.listed}


def test_the_cli_option_is_documented_and_reaches_the_fresh_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    help_text = CliRunner().invoke(app, ["load", "--help"], terminal_width=200).output
    assert "--fresh-convert-lookback-seconds" in help_text and "whole hours" in help_text
    bound = expected_offset("", NOW - dt.timedelta(seconds=30))
    assert converted_offsets(invoke_load(monkeypatch, "--fresh-convert-lookback-seconds", "30")) == {bound}
    default = expected_offset("", NOW - dt.timedelta(seconds=120))
    assert converted_offsets(invoke_load(monkeypatch)) == {default}, "on by default: 120 s"
    assert converted_offsets(invoke_load(monkeypatch, "--fresh-convert-lookback-seconds", "0")) == {""}
    negative = CliRunner().invoke(app, ["load", "--once", "--bucket", "b", "--fresh-convert-lookback-seconds", "-1"])
    assert negative.exit_code == 2 and "Invalid value for '--fresh-convert-lookback-seconds'" in negative.output
