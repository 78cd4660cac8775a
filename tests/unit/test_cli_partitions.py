"""``logpipe partitions`` on a bucket with a partition it cannot read, or one whose manifests disagree with its plan:
the others are still listed, the bad one is named on stderr in one line (no traceback), and the exit code is 1."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from typer.testing import CliRunner

from replicator.landing import Lander
from replicator.layout import WHOLE, Layout, Partition
from replicator.metrics import Metrics
from replicator.plan import resolve_shards
from replicator.store import MemoryStore
from replicator.synth import make_envelope
from service.cli import app
from tests.unit.test_finalize_shard_conflicts import old_worker_commits_whole
from tests.unit.test_finalize_shards import finalizer

pytestmark = pytest.mark.unit

LAYOUT = Layout()
H1 = dt.datetime(2026, 11, 26, 11, tzinfo=dt.UTC)
H2 = H1 + dt.timedelta(hours=1)
ENV = {"LOGPIPE_BUCKET": None, "LOGPIPE_CATALOG": None, "LOGPIPE_CRASH_AT": None, "LOGPIPE_LOG_FORMAT": None,
       "COLUMNS": "200"}  # fmt: skip


def _bucket(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    from replicator import clients

    store = MemoryStore()
    lander = Lander(store, ["ads_click"], Metrics())
    for hour, prefix in ((H1, "a"), (H2, "b")):
        env = make_envelope("ads_click", [f"{prefix}{i}" for i in range(5)], hour + dt.timedelta(minutes=5))
        lander.land(env.data, env.attributes)
    monkeypatch.setattr(clients, "object_store", lambda cfg, *a, **k: store)
    return store


def _run(*args: str) -> Any:
    return CliRunner().invoke(
        app, ["partitions", "--bucket", "bkt", "--category", "ads_click", *args], env=ENV, terminal_width=300
    )


def test_a_corrupt_plan_is_named_in_one_line_and_the_other_partitions_are_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _bucket(monkeypatch)
    store.create_if_absent(LAYOUT.plan(Partition("ads_click", H1)), b"{not json")
    result = _run("--json")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    rows = [json.loads(ln) for ln in result.stdout.splitlines() if ln.startswith("{")]
    assert [r["partition"] for r in rows] == ["2026-11-26T12"]
    [err] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert err.startswith("partitions: ads_click 2026-11-26T11: cannot read: PlanError: not a logpipe plan"), err


def test_a_shard_plan_conflict_is_listed_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    store = _bucket(monkeypatch)
    p = Partition("ads_click", H1)
    assert resolve_shards(store, LAYOUT, p, 2, "new", H2) == 2
    old_worker_commits_whole(store)  # commits H1 (tests.unit.test_finalize_shards.P) whole, against the plan
    finalizer(store, shards=1).finalize_shard(Partition("ads_click", H2), WHOLE)

    result = _run("--json")
    assert result.exit_code == 1, result.output
    rows = {r["partition"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["2026-11-26T11"]["foreign_manifests"] == [LAYOUT.manifest(p, 1)]
    assert rows["2026-11-26T11"]["shards"] == 2 and rows["2026-11-26T11"]["committed_events"] == 5
    assert rows["2026-11-26T12"]["foreign_manifests"] == [] and rows["2026-11-26T12"]["state"] == "complete"
    assert "2 shard(s), e.g. " + LAYOUT.manifest(p, 1) in result.stderr

    table = _run()
    assert table.exit_code == 1 and "2026-11-26T12" in table.stdout and "2026-11-26T11" in table.stdout


def test_a_clean_bucket_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    _bucket(monkeypatch)
    result = _run("--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
