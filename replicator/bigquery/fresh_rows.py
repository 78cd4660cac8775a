"""The row format of a tier's fresh table (``schema.fresh_schema``) and its Avro encoding.

A fresh row is ``records.event_to_row`` (the committed files' row, so both paths agree on every value) plus
``category`` and ``source`` (the staging object), with the payload split into ``payload_json``/``payload_bytes`` and
the extracted catalog fields packed into one JSON object of strings (``fields``), which the view casts back to the
catalog types. One generic schema lets a tier load all its categories with one job.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import fastavro

from replicator import records
from service.catalog import Category, FieldType, PayloadFormat
from service.contract import Envelope

log = logging.getLogger(__name__)

_TS = {"type": "long", "logicalType": "timestamp-micros"}
_JSON = {"type": "string", "sqlType": "JSON"}
AVRO_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "FreshRow",
    "namespace": "logpipe.fresh",
    "fields": [
        {"name": "category", "type": "string"},
        {"name": "source", "type": "string"},
        {"name": "event_id", "type": "string"},
        {"name": "event_time", "type": _TS},
        {"name": "ingest_time", "type": ["null", _TS], "default": None},
        {"name": "payload_json", "type": ["null", _JSON], "default": None},
        {"name": "payload_bytes", "type": ["null", "bytes"], "default": None},
        {"name": "attributes", "type": _JSON},
        {"name": "producer", "type": ["null", "string"], "default": None},
        {"name": "client_id", "type": ["null", "string"], "default": None},
        {"name": "envelope_id", "type": ["null", "string"], "default": None},
        {"name": "fields", "type": ["null", _JSON], "default": None},
    ],
}
_PARSED = fastavro.parse_schema(AVRO_SCHEMA)


def _field_text(value: Any, ftype: FieldType) -> str:
    if ftype is FieldType.BOOL:
        return "true" if value else "false"
    if ftype is FieldType.FLOAT64:
        return repr(float(value))
    return str(value)  # STRING as is; INT64 and TIMESTAMP (microseconds) as decimal integers


def _fields_json(extracted: dict[str, Any], category: Category) -> str:
    texts = {f.name: _field_text(extracted[f.name], f.type) for f in category.fields if extracted[f.name] is not None}
    return json.dumps(texts, separators=(",", ":"))


def fresh_rows(env: Envelope, category: Category, source: str) -> Iterator[dict[str, Any]]:
    """The fresh rows of the events of ``env`` (one staging object named ``source``) that have a valid row. An event
    without one (``records.UnconvertibleEvent``) is skipped: finalization rejects it too, and records it in the
    manifest and in ``quarantine/`` (docs/design.md); the fresh view must not differ from what will be committed."""
    for event in env.events:
        try:
            records.check_landed_event(event, category.name)
            row = records.event_to_row(event, category, env.envelope_id)
        except records.UnconvertibleEvent as exc:
            log.warning("fresh path skips event %r of %s: %s", event.event_id[:64], source, exc)
            continue
        payload = row.pop("payload")
        extracted = {f.name: row.pop(f.name, None) for f in category.fields}
        is_json = category.payload_format is PayloadFormat.JSON
        row.update(
            category=category.name,
            source=source,
            payload_json=payload if is_json else None,
            payload_bytes=None if is_json else payload,
            fields=_fields_json(extracted, category) if category.fields else None,
        )
        yield row


def encode(rows: Iterable[dict[str, Any]]) -> bytes:
    """One Avro object container file (deflate)."""
    buf = io.BytesIO()
    fastavro.writer(buf, _PARSED, rows, codec="deflate")
    return buf.getvalue()


def decode(data: bytes) -> list[dict[str, Any]]:
    """Inverse of ``encode`` (timestamps come back as datetimes); used by tests."""
    return [dict(r) for r in fastavro.reader(io.BytesIO(data))]  # type: ignore[arg-type]
