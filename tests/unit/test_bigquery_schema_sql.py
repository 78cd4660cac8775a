"""Unit tests of BigQuery names, schemas, evolution planning, view SQL and fresh rows (no servers)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from google.cloud.bigquery import SchemaField

from replicator import records
from replicator.bigquery import fresh_rows, names
from replicator.bigquery.schema import category_schema, fresh_schema, plan_evolution
from replicator.bigquery.views import view_sql
from replicator.layout import Partition
from replicator.synth import make_envelope
from service.catalog import load_catalog
from service.envelope import decode

pytestmark = pytest.mark.unit
CAT = load_catalog()
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)


def test_table_schema_is_the_row_schema_of_the_files() -> None:
    for c in CAT.categories:
        avro = [f["name"] for f in records.avro_schema(c)["fields"]]
        assert [f.name for f in category_schema(c)] == avro
        payload = next(f for f in category_schema(c) if f.name == "payload")
        assert payload.field_type == ("JSON" if c.payload_format == "json" else "BYTES")
    required = [f.name for f in category_schema(CAT.category("ads_click")) if f.mode == "REQUIRED"]
    assert required == ["event_id", "event_time"]


def test_fresh_schema_matches_the_fresh_avro_schema() -> None:
    assert [f.name for f in fresh_schema()] == [f["name"] for f in fresh_rows.AVRO_SCHEMA["fields"]]


def test_names_are_deterministic_and_order_free() -> None:
    assert names.batch_id(["b", "a"]) == names.batch_id(["a", "b"]) != names.batch_id(["a"])
    p = Partition("ads_click", H)
    base = names.commit_job_base("logpipe", "logpipe", p, 2, "9f2c/x")
    assert base == "logpipe-commit-logpipe-ads_click-2026112613-g0002-9f2c_x"
    assert names.job_id(base, 3) == base + "-a3"
    assert names.fresh_table("core-eu") == "_fresh_core_eu"
    assert names.committed_marker(p, 1) == "bq/committed/ads_click/2026/11/26/13/g0001.loaded"


def _live(*fields: tuple[str, str, str]) -> list[SchemaField]:
    return [SchemaField(n, t, mode=m) for n, t, m in fields]


def test_evolution_appends_nullable_fields_in_legacy_type_names() -> None:
    wanted = category_schema(CAT.category("ads_click"))
    live = [SchemaField(f.name, {"INT64": "INTEGER"}.get(f.field_type, f.field_type), mode=f.mode) for f in wanted[:-1]]
    evo, problems = plan_evolution("t", live, wanted)
    assert problems == []
    assert [f.name for f in evo.additions] == ["cost_micros"]
    evo, problems = plan_evolution("t", wanted, wanted)
    assert (evo.additions, problems) == ((), [])


def test_evolution_refuses_removed_retyped_and_required_changes() -> None:
    live = _live(("event_id", "STRING", "REQUIRED"), ("a", "STRING", "NULLABLE"), ("b", "STRING", "NULLABLE"))
    wanted = _live(("event_id", "STRING", "NULLABLE"), ("b", "INTEGER", "NULLABLE"), ("c", "STRING", "REQUIRED"))
    _, problems = plan_evolution("t", live, wanted)
    text = "\n".join(problems)
    assert "t.a: column exists in BigQuery but not in the catalog" in text
    assert "t.b: type STRING in BigQuery, INTEGER in the catalog" in text
    assert "t.event_id: mode REQUIRED in BigQuery, NULLABLE in the catalog" in text
    assert "t.c: a new column must be NULLABLE" in text
    assert len(problems) == 4


def test_view_sql_prefers_committed_and_deduplicates_fresh() -> None:
    sql = view_sql("p", "ds", CAT.category("ads_click"), horizon_hours=6)
    assert sql.startswith("SELECT event_id, event_time, ingest_time, payload, attributes, producer, client_id, ")
    assert "FROM `p.ds.ads_click__committed`\nUNION ALL" in sql
    assert "FROM `p.ds._fresh_core` AS f" in sql
    assert "f.category = 'ads_click'" in sql and sql.count("INTERVAL 6 HOUR") == 2
    assert "f.event_id NOT IN (SELECT c.event_id FROM `p.ds.ads_click__committed`" in sql
    assert "QUALIFY ROW_NUMBER() OVER (PARTITION BY f.event_id" in sql
    assert "CAST(JSON_VALUE(f.fields, '$.cost_micros') AS INT64) AS cost_micros" in sql
    assert "f.payload_bytes AS payload" in view_sql("p", "ds", CAT.category("trace_span"))


def test_fresh_rows_carry_the_committed_row_values() -> None:
    for name in ("ads_click", "trace_span"):
        category = CAT.category(name)
        enc = make_envelope(name, ["e1", "e2"], H)
        env = decode(enc.data, enc.attributes)
        rows = list(fresh_rows.fresh_rows(env, category, "staging/x"))
        back = fresh_rows.decode(fresh_rows.encode(rows))
        assert [r["event_id"] for r in back] == ["e1", "e2"]
        for event, row in zip(env.events, back, strict=True):
            ref = records.event_to_row(event, category, env.envelope_id)
            assert row["source"] == "staging/x" and row["category"] == name
            assert row["envelope_id"] == ref["envelope_id"] and row["attributes"] == ref["attributes"]
            assert int(row["event_time"].timestamp() * 1_000_000) == ref["event_time"]
            if name == "ads_click":
                assert row["payload_json"] == ref["payload"] and row["payload_bytes"] is None
                assert json.loads(row["fields"]) == {"campaign_id": ref["campaign_id"], "user_id": ref["user_id"]}
            else:
                assert row["payload_bytes"] == ref["payload"] and row["fields"] is None


def test_fresh_field_texts_cast_back_to_the_catalog_types() -> None:
    from service.catalog import FieldType

    assert fresh_rows._field_text(True, FieldType.BOOL) == "true"
    assert fresh_rows._field_text(2**62, FieldType.INT64) == str(2**62)
    assert float(fresh_rows._field_text(0.1, FieldType.FLOAT64)) == 0.1
    assert fresh_rows._field_text(1_700_000_000_000_000, FieldType.TIMESTAMP) == "1700000000000000"
