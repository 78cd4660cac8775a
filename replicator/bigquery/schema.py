"""Table schemas, derived from the catalog (the same rules as replicator/records.py and deploy/terraform), and the
compatibility check that makes schema evolution safe.

Evolution rule (append-only): a live table may gain NULLABLE columns at the end; any other difference (a column the
catalog no longer has, a changed type, a changed mode, a new REQUIRED column) is refused by ``plan_evolution`` with
one line per problem. Nothing is changed when anything is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.cloud.bigquery import SchemaField

from service.catalog import Category, FieldType, PayloadFormat

# The API answers with legacy type names; compare in that vocabulary.
_LEGACY = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN", "STRUCT": "RECORD"}
_FIELD_TYPES = {t: _LEGACY.get(t.value, t.value) for t in FieldType}


def _f(name: str, type_: str, mode: str = "NULLABLE", description: str = "") -> SchemaField:
    if description:
        return SchemaField(name, type_, mode=mode, description=description)
    return SchemaField(name, type_, mode=mode)


def category_schema(category: Category) -> list[SchemaField]:
    """Columns of ``<category>__committed`` and of the view, in order: the row schema of replicator/records.py."""
    payload = "JSON" if category.payload_format is PayloadFormat.JSON else "BYTES"
    cols = [
        _f("event_id", "STRING", "REQUIRED", "Unique id of the event (UUIDv7 from the SDK)."),
        _f("event_time", "TIMESTAMP", "REQUIRED", "When the event happened; the partitioning column."),
        _f("ingest_time", "TIMESTAMP", description="When a front-end accepted the event."),
        _f("payload", payload, description="The event's payload."),
        _f("attributes", "JSON", description="Producer-supplied key/value attributes."),
        _f("producer", "STRING", description="Name of the producing service."),
        _f("client_id", "STRING", description="Id of the SDK client that sent the event."),
        _f("envelope_id", "STRING", description="Envelope (Pub/Sub message) that carried the event."),
    ]
    cols += [_f(fl.name, _FIELD_TYPES[fl.type], description=fl.description) for fl in category.fields]
    return cols


def fresh_schema() -> list[SchemaField]:
    """Columns of a tier's ``_fresh_<tier>`` table: one generic schema for every category of the tier, so a tier
    needs one load job per batch whatever its number of categories. ``fields`` holds the extracted catalog fields as
    a JSON object (values exactly as records.event_to_row computed them; timestamps in microseconds)."""
    return [
        _f("category", "STRING", "REQUIRED"),
        _f("source", "STRING", "REQUIRED", "The staging object the row came from."),
        _f("event_id", "STRING", "REQUIRED"),
        _f("event_time", "TIMESTAMP", "REQUIRED"),
        _f("ingest_time", "TIMESTAMP"),
        _f("payload_json", "JSON"),
        _f("payload_bytes", "BYTES"),
        _f("attributes", "JSON"),
        _f("producer", "STRING"),
        _f("client_id", "STRING"),
        _f("envelope_id", "STRING"),
        _f("fields", "JSON"),
    ]


def _norm(f: SchemaField) -> tuple[str, str]:
    t = str(f.field_type).upper()
    return _LEGACY.get(t, t), str(f.mode or "NULLABLE").upper()


@dataclass(frozen=True, slots=True)
class Evolution:
    """What ``plan_evolution`` decided: the columns to append (empty when the table is up to date)."""

    table: str
    additions: tuple[SchemaField, ...]


def plan_evolution(
    table: str, live: Sequence[SchemaField], wanted: Sequence[SchemaField]
) -> tuple[Evolution, list[str]]:
    """Compare ``live`` with ``wanted``. Returns the evolution and a list of problems (empty when compatible)."""
    problems: list[str] = []
    want = {f.name: f for f in wanted}
    have = {f.name for f in live}
    for f in live:
        w = want.get(f.name)
        if w is None:
            problems.append(f"{table}.{f.name}: column exists in BigQuery but not in the catalog (removing is refused)")
            continue
        (lt, lm), (wt, wm) = _norm(f), _norm(w)
        if lt != wt:
            problems.append(f"{table}.{f.name}: type {lt} in BigQuery, {wt} in the catalog (retyping is refused)")
        if lm != wm:
            problems.append(f"{table}.{f.name}: mode {lm} in BigQuery, {wm} in the catalog (changing modes is refused)")
    additions = tuple(w for w in wanted if w.name not in have)
    for w in additions:
        if _norm(w)[1] != "NULLABLE":
            problems.append(f"{table}.{w.name}: a new column must be NULLABLE, the catalog says {_norm(w)[1]}")
    return Evolution(table, additions), problems
