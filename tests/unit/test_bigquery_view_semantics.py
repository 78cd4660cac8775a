"""The user-facing view's meaning, by executing the SQL ``view_sql`` generates (no emulator).

The mutation audit (docs/guarantees.md) found the view's anti-join inverted caught only by an integration test: the
unit test in test_bigquery_schema_sql.py matches SQL text. Here the generated query runs on sqlite (stdlib) over
tables named and shaped like the committed and fresh tables, and the rows it returns are checked.

sqlite cannot parse three BigQuery constructs; ``_executable`` rewrites exactly those, each with the same meaning, and
fails if one is not found where expected (so a change of the view's shape fails here instead of being mistranslated):
  * ``TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL n HOUR)`` becomes the horizon as a constant, in microseconds (the
    timestamps of the test tables are microseconds too); BigQuery also evaluates it once per query.
  * ``QUALIFY <window expr> = 1`` becomes the window expression as a column of the inner SELECT and ``= 1`` as a
    filter of the outer one (QUALIFY filters after WHERE and the window functions, which is what this does).
  * ``JSON_VALUE`` and ``TIMESTAMP_MICROS`` become Python functions with BigQuery's meaning for these arguments.
Everything else (the UNION ALL, the anti-join, the category and horizon filters, the window's partition and order)
runs as generated.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import sqlite3
from typing import Any

import pytest

from replicator.bigquery import names
from replicator.bigquery.schema import category_schema, fresh_schema
from replicator.bigquery.views import view_sql
from service.catalog import Category, load_catalog

pytestmark = pytest.mark.unit

CAT = load_catalog()
ADS = CAT.category("ads_click")
NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
HORIZON_HOURS = 6
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_HORIZON = re.compile(r"TIMESTAMP_SUB\(CURRENT_TIMESTAMP\(\), INTERVAL (\d+) HOUR\)")


def _us(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def _ago(hours: float) -> dt.datetime:
    return NOW - dt.timedelta(hours=hours)


def _executable(sql: str, now: dt.datetime) -> str:
    """``sql`` with the rewrites of the module docstring."""
    sql, n = _HORIZON.subn(lambda m: str(_us(now - dt.timedelta(hours=int(m.group(1))))), sql)
    assert n >= 1, "the view has no horizon"
    lines = sql.split("\n")
    qualify = [i for i, line in enumerate(lines) if line.lstrip().startswith("QUALIFY ")]
    inner = [i for i, line in enumerate(lines) if line.startswith("  SELECT ")]
    assert len(qualify) == 1 and len(inner) == 1 and inner[0] < qualify[0] and lines[-1] == ")", sql
    line = lines.pop(qualify[0]).strip()
    assert line.endswith(" = 1"), line
    lines[inner[0]] += f", {line[len('QUALIFY ') : -len(' = 1')]} AS _qualify_rn"
    lines[-1] = ") WHERE _qualify_rn = 1"
    return "\n".join(lines)


def _json_value(doc: str | None, path: str) -> str | None:
    """BigQuery's JSON_VALUE for a top-level ``$.name``: the scalar as a string, NULL for objects, arrays, null."""
    assert re.fullmatch(r"\$\.[a-z_][a-z0-9_]*", path), path
    if doc is None:
        return None
    value = json.loads(doc).get(path[2:])
    if value is None or isinstance(value, dict | list):
        return None
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


class _Dataset:
    """The committed table of ``category`` and its tier's fresh table, in sqlite, under their BigQuery names."""

    def __init__(self, category: Category, project: str = "p", dataset: str = "ds") -> None:
        self.category = category
        self.sql = view_sql(project, dataset, category, horizon_hours=HORIZON_HOURS)
        self.db = sqlite3.connect(":memory:")
        self.db.create_function("JSON_VALUE", 2, _json_value, deterministic=True)
        self.db.create_function("TIMESTAMP_MICROS", 1, lambda us: us, deterministic=True)
        self.committed = f"{project}.{dataset}.{names.committed_table(category.name)}"
        self.fresh = f"{project}.{dataset}.{names.fresh_table(category.tier)}"
        for table, schema in ((self.committed, category_schema(category)), (self.fresh, fresh_schema())):
            self.db.execute(f'CREATE TABLE "{table}" ({", ".join(f.name for f in schema)})')

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        self.db.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(row))})', list(row.values()))

    def commit(self, event_id: str, event_time: dt.datetime) -> None:
        """A committed row (loaded from a manifest's files)."""
        row = {"event_id": event_id, "event_time": _us(event_time), "ingest_time": _us(event_time) + 1,
               "payload": "{}", "attributes": "{}", "producer": "committed", "client_id": "c",
               "envelope_id": "env-committed", "campaign_id": "camp", "user_id": "u", "cost_micros": 7}  # fmt: skip
        self._insert(self.committed, row)

    def fresh_row(
        self, event_id: str, event_time: dt.datetime, envelope_id: str, ingest: dt.datetime, category: str = ""
    ) -> None:
        """A fresh row (loaded from a staging object, before its partition is committed)."""
        fields = {"campaign_id": "camp", "user_id": "u", "cost_micros": 5}
        row = {"category": category or self.category.name, "source": f"staging/{envelope_id}.pb.zst",
               "event_id": event_id, "event_time": _us(event_time), "ingest_time": _us(ingest),
               "payload_json": "{}", "payload_bytes": None, "attributes": "{}", "producer": "fresh", "client_id": "c",
               "envelope_id": envelope_id, "fields": json.dumps(fields)}  # fmt: skip
        self._insert(self.fresh, row)

    def view(self) -> list[dict[str, Any]]:
        cur = self.db.execute(_executable(self.sql, NOW))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _shown(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(event_id, where from, envelope_id) of each row, sorted; asserts each event_id appears once."""
    dup = {k: n for k, n in collections.Counter(r["event_id"] for r in rows).items() if n != 1}
    assert dup == {}, f"event ids shown more than once: {dup}"
    return sorted((r["event_id"], r["producer"], r["envelope_id"]) for r in rows)


def test_a_committed_row_wins_over_its_fresh_copies_and_fresh_copies_collapse_to_one() -> None:
    ds = _Dataset(ADS)
    # Fresh rows only: the loader ran before the hour's first manifest. f1 arrived in two envelopes (a client's
    # retry through another front-end); the first one ingested is shown.
    ds.fresh_row("c1", _ago(1), "env-a", ingest=_ago(0.9))
    ds.fresh_row("f1", _ago(2), "env-late", ingest=_ago(1.5))
    ds.fresh_row("f1", _ago(2), "env-early", ingest=_ago(1.8))
    ds.fresh_row("f2", _ago(3), "env-b", ingest=_ago(2.9))
    ds.fresh_row("too-old", _ago(HORIZON_HOURS + 1), "env-c", ingest=_ago(HORIZON_HOURS + 1))  # only once committed
    ds.fresh_row("x1", _ago(1), "env-d", ingest=_ago(0.9), category="login_event")  # same tier, other category
    assert _shown(ds.view()) == [
        ("c1", "fresh", "env-a"),
        ("f1", "fresh", "env-early"),
        ("f2", "fresh", "env-b"),
    ]

    # c1's partition is committed; its fresh copy is not deleted yet (the loader's next step). An older committed
    # event is shown whatever the horizon.
    ds.commit("c1", _ago(1))
    ds.commit("old", _ago(30))
    rows = ds.view()
    assert _shown(rows) == [
        ("c1", "committed", "env-committed"),
        ("f1", "fresh", "env-early"),
        ("f2", "fresh", "env-b"),
        ("old", "committed", "env-committed"),
    ]
    assert {r["event_id"]: r["cost_micros"] for r in rows} == {"c1": 7, "f1": 5, "f2": 5, "old": 7}  # columns line up

    # f1 is committed too while both its fresh copies remain (a crash between the load and the fresh-row delete).
    ds.commit("f1", _ago(2))
    assert _shown(ds.view()) == [
        ("c1", "committed", "env-committed"),
        ("f1", "committed", "env-committed"),
        ("f2", "fresh", "env-b"),
        ("old", "committed", "env-committed"),
    ]


def test_a_fresh_row_exactly_at_the_horizon_is_shown_and_one_just_past_it_is_not() -> None:
    ds = _Dataset(ADS)
    edge = _ago(HORIZON_HOURS)
    ds.fresh_row("at", edge, "env-a", ingest=edge)
    ds.fresh_row("past", edge - dt.timedelta(microseconds=1), "env-b", ingest=edge)
    assert _shown(ds.view()) == [("at", "fresh", "env-a")]
    ds.commit("at", edge)
    assert _shown(ds.view()) == [("at", "committed", "env-committed")]
