"""Bucket layout names and the row formats of landed files."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from replicator.layout import Layout, Partition, manifest_generation, parse_partition_dir
from replicator.records import decode_rows, encode_rows, event_to_row
from service.catalog import Category, FieldType, FileFormat, PayloadField, PayloadFormat
from service.contract import Event

pytestmark = pytest.mark.unit

HOUR = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)


def test_partition_of_converts_to_utc_hour() -> None:
    t = dt.datetime(2026, 11, 26, 14, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert Partition.of("ads_click", t) == Partition("ads_click", HOUR)


def test_names_are_deterministic_and_parse_back() -> None:
    lay, p = Layout(), Partition("ads_click", HOUR)
    assert lay.staging_object(p, "e1") == "staging/ads_click/2026/11/26/13/e1.pb.zst"
    assert lay.manifest(p, 2) == "logs/ads_click/2026/11/26/13/_manifest-g0002.json"
    assert (
        lay.data_file(p, 1, "abc", 3, FileFormat.JSONL_GZ)
        == "logs/ads_click/2026/11/26/13/part-g0001-abc-00003.jsonl.gz"
    )
    assert manifest_generation(lay.manifest(p, 17)) == 17
    assert manifest_generation(lay.success_marker(p)) is None
    assert parse_partition_dir(lay.staging_object(p, "e1"), "staging") == p
    assert parse_partition_dir("logs/ads_click/2026/11/26/13/x", "staging") is None


def _cat(fmt: FileFormat, payload: PayloadFormat) -> Category:
    fields = (
        (PayloadField(name="n", type=FieldType.INT64), PayloadField(name="t", type=FieldType.TIMESTAMP))
        if payload is PayloadFormat.JSON
        else ()
    )
    return Category(name="cat_x", tier="core", payload_format=payload, file_format=fmt, fields=fields)


@pytest.mark.parametrize("fmt", list(FileFormat))
@pytest.mark.parametrize("payload", list(PayloadFormat))
def test_rows_round_trip(fmt: FileFormat, payload: PayloadFormat) -> None:
    cat = _cat(fmt, payload)
    rows = []
    for i in range(5):
        body = (
            json.dumps({"n": i, "t": "2026-11-26T13:00:00Z"}).encode()
            if payload is PayloadFormat.JSON
            else bytes([i]) * 3
        )
        e = Event(event_id=f"id-{i}", category="cat_x", payload=body, attributes={"k": str(i)}, producer="p")
        e.event_time.seconds, e.event_time.nanos = 1_764_162_000 + i, 123_456_000
        rows.append(event_to_row(e, cat, "env-1"))
    back = decode_rows(encode_rows(rows, cat), cat)
    assert back == rows
    assert back[0]["event_time"] == 1_764_162_000_123_456
    if payload is PayloadFormat.JSON:
        assert back[3]["n"] == 3 and back[3]["t"] == 1_795_698_000_000_000


def test_field_extraction_tolerates_wrong_types() -> None:
    cat = _cat(FileFormat.AVRO, PayloadFormat.JSON)
    e = Event(event_id="x", category="cat_x", payload=b'{"n": "not a number", "t": 5}')
    row = event_to_row(e, cat, "env")
    assert row["n"] is None and row["t"] is None
    e2 = Event(event_id="y", category="cat_x", payload=b"[1,2]")
    assert event_to_row(e2, cat, "env")["n"] is None
