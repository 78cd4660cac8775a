"""The user-facing view ``<dataset>.<category>``: committed rows, plus fresh rows not yet committed, each event_id once.

    SELECT <columns> FROM <category>__committed                       -- exactly once per event_id (manifests are
    UNION ALL                                                          -- deduplicated, each loaded by one job id)
    SELECT <columns> FROM (
      SELECT <columns projected from the tier's fresh table> FROM _fresh_<tier> AS f
      WHERE f.category = '<category>' AND f.event_time >= <horizon>
        AND f.event_id NOT IN (SELECT event_id FROM <category>__committed WHERE event_time >= <horizon>)
      QUALIFY ROW_NUMBER() OVER (PARTITION BY f.event_id ORDER BY ...) = 1)

Why this is exactly once at every instant: a committed row wins over any fresh copy of the same event_id (the
anti-join), and fresh copies among themselves collapse to one (QUALIFY). So the view is right whatever the loader
did last: fresh batches loaded twice, a crash between a load and its bookkeeping, fresh rows not yet deleted.
The horizon (``CURRENT_TIMESTAMP() - N hours``) is a constant per query, so BigQuery prunes partitions of both
tables; events older than the horizon are shown only once committed (docs/design.md, "BigQuery loading").
"""

from __future__ import annotations

from replicator.bigquery import names
from service.catalog import Category, FieldType, PayloadFormat

DEFAULT_HORIZON_HOURS = 48
_BASE = ("event_id", "event_time", "ingest_time", "payload", "attributes", "producer", "client_id", "envelope_id")
_CASTS = {
    FieldType.STRING: "JSON_VALUE(f.fields, '$.{n}')",
    FieldType.INT64: "CAST(JSON_VALUE(f.fields, '$.{n}') AS INT64)",
    FieldType.FLOAT64: "CAST(JSON_VALUE(f.fields, '$.{n}') AS FLOAT64)",
    FieldType.BOOL: "CAST(JSON_VALUE(f.fields, '$.{n}') AS BOOL)",
    FieldType.TIMESTAMP: "TIMESTAMP_MICROS(CAST(JSON_VALUE(f.fields, '$.{n}') AS INT64))",
}


def _ref(project: str, dataset: str, table: str) -> str:
    return f"`{project}.{dataset}.{table}`"


def view_sql(project: str, dataset: str, category: Category, horizon_hours: int = DEFAULT_HORIZON_HOURS) -> str:
    """The view query of ``category`` (standard SQL). Field and category names are validated identifiers (catalog
    regexes), so interpolating them is safe."""
    committed = _ref(project, dataset, names.committed_table(category.name))
    fresh = _ref(project, dataset, names.fresh_table(category.tier))
    cols = [*_BASE, *(fl.name for fl in category.fields)]
    payload = "f.payload_json" if category.payload_format is PayloadFormat.JSON else "f.payload_bytes"
    fresh_cols = [f"f.{c}" for c in _BASE if c != "payload"]
    fresh_cols.insert(3, f"{payload} AS payload")
    fresh_cols += [f"{_CASTS[fl.type].format(n=fl.name)} AS {fl.name}" for fl in category.fields]
    horizon = f"TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL {int(horizon_hours)} HOUR)"
    col_list = ", ".join(cols)
    return (
        f"SELECT {col_list} FROM {committed}\n"
        f"UNION ALL\n"
        f"SELECT {col_list} FROM (\n"
        f"  SELECT {', '.join(fresh_cols)}\n"
        f"  FROM {fresh} AS f\n"
        f"  WHERE f.category = '{category.name}' AND f.event_time >= {horizon}\n"
        f"    AND f.event_id NOT IN (SELECT c.event_id FROM {committed} AS c WHERE c.event_time >= {horizon})\n"
        f"  QUALIFY ROW_NUMBER() OVER (PARTITION BY f.event_id ORDER BY f.ingest_time, f.envelope_id, f.source) = 1\n"
        f")"
    )
