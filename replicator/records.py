"""Rows: how one event is written into landed and committed files, in the category's file format.

The row schema is the BigQuery table schema (see docs/formats.md):
  event_id STRING REQUIRED, event_time TIMESTAMP REQUIRED, ingest_time TIMESTAMP, payload JSON|BYTES,
  attributes JSON (object of strings), producer STRING, client_id STRING, envelope_id STRING,
  plus one NULLABLE column per catalog ``fields`` entry, extracted from the payload's top-level key of that name
  (a missing key or a value of the wrong type gives NULL, never an error: the raw payload keeps the truth).

Formats:
  * avro: object container file, deflate codec; timestamps are ``long`` ``timestamp-micros``; JSON columns are
    ``string`` annotated ``sqlType: JSON``; bytes payloads are ``bytes``.
  * jsonl_gz: gzip'd newline-delimited JSON; timestamps are RFC 3339 strings; JSON columns are JSON text strings;
    bytes payloads are base64 (BigQuery's encoding for BYTES in JSON).

An event without a valid row (a JSON payload that is not UTF-8, an event or ingest time outside BigQuery's TIMESTAMP
range) makes ``event_to_row`` raise ``UnconvertibleEvent``; the finalizer records and skips it (docs/design.md,
"Unconvertible events"). ``encode_rows``/``decode_rows`` are exact inverses for rows produced by ``event_to_row``.
Any change to the bytes written here for the same events must bump ``files.ENCODING_VERSION`` (part of the TOKEN).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json
import math
import os
from typing import Any, Final

import fastavro

from service.catalog import Category, FieldType, FileFormat, PayloadFormat
from service.contract import Event
from service.jsonlimits import MAX_JSON_DEPTH, too_deep

Row = dict[str, Any]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: BigQuery's TIMESTAMP range (0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z) in microseconds since the epoch;
#: also the range ``micros_to_datetime`` and the jsonl_gz timestamp text can represent.
MIN_MICROS: Final = -62_135_596_800_000_000
MAX_MICROS: Final = 253_402_300_799_999_999
_AVRO_TYPES: dict[FieldType, Any] = {
    FieldType.STRING: "string",
    FieldType.INT64: "long",
    FieldType.FLOAT64: "double",
    FieldType.BOOL: "boolean",
    FieldType.TIMESTAMP: {"type": "long", "logicalType": "timestamp-micros"},
}


class UnconvertibleEvent(ValueError):
    """An event that has no valid row. ``reason`` is a short machine-readable code (a metric label), ``detail`` says
    what exactly; both are pure functions of the event, so every finalizer rejects the same events the same way."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _micros(seconds: int, nanos: int) -> int:
    return seconds * 1_000_000 + nanos // 1000


def _timestamp(name: str, seconds: int, nanos: int) -> int:
    us = _micros(seconds, nanos)
    if not MIN_MICROS <= us <= MAX_MICROS:
        raise UnconvertibleEvent(
            f"{name}_out_of_range", f"{name} {seconds}s {nanos}ns is outside 0001-01-01..9999-12-31 UTC"
        )
    return us


def check_landed_event(event: Event, category: str) -> None:
    """What ``service.envelope.decode`` checks per event and ``event_to_row`` does not, for events of staging objects
    that landed under older rules. Raises ``UnconvertibleEvent``."""
    if event.category != category:
        raise UnconvertibleEvent("wrong_category", f"event of category {event.category[:64]!r} in {category}")
    if not event.event_id:
        raise UnconvertibleEvent("missing_event_id", "event has no event_id")


def micros_to_datetime(us: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=us)


def _extract(value: Any, ftype: FieldType) -> Any:
    if value is None:
        return None
    if ftype is FieldType.STRING:  # a lone surrogate (JSON "\ud800") has no UTF-8 encoding: NULL, not an error
        return value if isinstance(value, str) and (value.isascii() or _utf8_encodable(value)) else None
    if ftype is FieldType.BOOL:
        return value if isinstance(value, bool) else None
    if ftype is FieldType.INT64:
        ok = isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
        return value if ok else None
    if ftype is FieldType.FLOAT64:  # NaN/Infinity (json.loads accepts them) and ints past a double's range: NULL
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        try:
            f = float(value)
        except OverflowError:
            return None
        return f if math.isfinite(f) else None
    try:  # TIMESTAMP: RFC 3339 string, within BigQuery's range
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=dt.UTC)
        us = int((t - _EPOCH) / dt.timedelta(microseconds=1))
    except (ValueError, OverflowError):
        return None
    return us if MIN_MICROS <= us <= MAX_MICROS else None


def _utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def event_to_row(event: Event, category: Category, envelope_id: str) -> Row:
    """The row for ``event``. Timestamps are integer microseconds since the epoch (UTC).

    Raises ``UnconvertibleEvent`` when the event has no valid row: ``payload_not_utf8`` (a JSON category's payload),
    ``payload_too_deep`` (a JSON payload nested deeper than BigQuery's 500 levels: one such row fails a whole load),
    ``event_time_out_of_range`` or ``ingest_time_out_of_range`` (outside ``MIN_MICROS..MAX_MICROS``). A returned row
    always encodes (``RowFileWriter.write``) in both formats. An extracted field that is missing, of the wrong type or
    not representable (out of range, not finite, not UTF-8) is NULL, never an error.
    """
    row: Row = {
        "event_id": event.event_id,
        "event_time": _timestamp("event_time", event.event_time.seconds, event.event_time.nanos),
        "ingest_time": _timestamp("ingest_time", event.ingest_time.seconds, event.ingest_time.nanos)
        if event.HasField("ingest_time")
        else None,
        "attributes": json.dumps(dict(event.attributes), sort_keys=True, separators=(",", ":"))
        if event.attributes
        else "{}",
        "producer": event.producer or None,
        "client_id": event.client_id or None,
        "envelope_id": envelope_id,
    }
    if category.payload_format is PayloadFormat.JSON:
        try:
            text = event.payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnconvertibleEvent("payload_not_utf8", f"payload byte {exc.start}: {exc.reason}") from None
        if too_deep(event.payload):
            raise UnconvertibleEvent("payload_too_deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
        row["payload"] = text
        if category.fields:
            try:
                doc = json.loads(text)
            except (ValueError, RecursionError):  # RecursionError: nesting deeper than the interpreter's stack
                doc = None
            for f in category.fields:
                row[f.name] = _extract(doc.get(f.name) if isinstance(doc, dict) else None, f.type)
    else:
        row["payload"] = bytes(event.payload)
    return row


def avro_schema(category: Category) -> dict[str, Any]:
    """The Avro schema of ``category``'s files (parsed form accepted by fastavro)."""
    ts = {"type": "long", "logicalType": "timestamp-micros"}
    payload: Any = {"type": "string", "sqlType": "JSON"} if category.payload_format is PayloadFormat.JSON else "bytes"
    fields: list[dict[str, Any]] = [
        {"name": "event_id", "type": "string"},
        {"name": "event_time", "type": ts},
        {"name": "ingest_time", "type": ["null", ts], "default": None},
        {"name": "payload", "type": payload},
        {"name": "attributes", "type": {"type": "string", "sqlType": "JSON"}},
        {"name": "producer", "type": ["null", "string"], "default": None},
        {"name": "client_id", "type": ["null", "string"], "default": None},
        {"name": "envelope_id", "type": ["null", "string"], "default": None},
    ]
    fields += [{"name": f.name, "type": ["null", _AVRO_TYPES[f.type]], "default": None} for f in category.fields]
    return {
        "type": "record",
        "name": "LogpipeEvent",
        "namespace": f"logpipe.{category.name}",
        "fields": fields,
    }


def _json_row(row: Row, category: Category) -> Row:
    out = dict(row)
    for key in ("event_time", "ingest_time"):
        if out.get(key) is not None:
            out[key] = micros_to_datetime(out[key]).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for f in category.fields:
        if f.type is FieldType.TIMESTAMP and out.get(f.name) is not None:
            out[f.name] = micros_to_datetime(out[f.name]).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if category.payload_format is PayloadFormat.BYTES:
        out["payload"] = base64.b64encode(out["payload"]).decode("ascii")
    return out


#: fastavro's own default Avro block (uncompressed bytes per block); ``FileWriter`` picks larger blocks for large files.
DEFAULT_BLOCK_BYTES = 16000


class RowFileWriter:
    """Streams rows into one file in ``category.file_format``, holding only encoded bytes (not row dicts).

    ``size`` is the number of encoded bytes so far. It lags by at most one block of about ``block_bytes``
    uncompressed bytes (an Avro block, or the JSON lines handed to gzip at once) plus zlib's buffer, which lets a
    caller cut files at a target size measured on the real output. ``finish`` returns the complete file; the output
    is a pure function of the rows and ``block_bytes`` when ``sync_marker`` (16 bytes; Avro only) is given. Memory:
    one block plus the encoded file.
    """

    def __init__(
        self, category: Category, *, sync_marker: bytes | None = None, block_bytes: int = DEFAULT_BLOCK_BYTES
    ) -> None:
        self._category = category
        self._buf = io.BytesIO()
        self._avro: Any = None
        self._gz: gzip.GzipFile | None = None
        self._lines: list[bytes] = []  # jsonl_gz: lines not yet handed to gzip, about ``block_bytes`` at most
        self._pending = 0
        self._block = block_bytes
        self.rows = 0
        if category.file_format is FileFormat.AVRO:
            from fastavro.write import Writer

            # Level 1: deflate at the default level costs ~2x the time for a few % of size on log payloads.
            self._avro = Writer(
                self._buf,
                fastavro.parse_schema(avro_schema(category)),
                codec="deflate",
                sync_marker=sync_marker if sync_marker is not None else os.urandom(16),
                compression_level=1,
                sync_interval=block_bytes,
            )
        else:
            self._gz = gzip.GzipFile(fileobj=self._buf, mode="wb", compresslevel=3, mtime=0)

    def write(self, row: Row) -> None:
        if self._avro is not None:
            self._avro.write(row)
        else:
            assert self._gz is not None
            line = json.dumps(_json_row(row, self._category), separators=(",", ":")).encode() + b"\n"
            self._lines.append(line)
            self._pending += len(line)
            if self._pending >= self._block:
                self._gz.write(b"".join(self._lines))
                self._lines, self._pending = [], 0
        self.rows += 1

    @property
    def size(self) -> int:
        return self._buf.tell()

    def finish(self) -> bytes:
        """Flush and return the whole file. The writer must not be used afterwards."""
        if self._avro is not None:
            self._avro.flush()
        else:
            assert self._gz is not None
            self._gz.write(b"".join(self._lines))
            self._lines, self._pending = [], 0
            self._gz.close()
        return self._buf.getvalue()


def encode_rows(rows: list[Row], category: Category, *, sync_marker: bytes | None = None) -> bytes:
    """Serialize ``rows`` as one file in ``category.file_format`` (see ``RowFileWriter``)."""
    w = RowFileWriter(category, sync_marker=sync_marker)
    for row in rows:
        w.write(row)
    return w.finish()


def decode_rows(data: bytes, category: Category) -> list[Row]:
    """Parse a file written by ``encode_rows`` back into rows (timestamps as integer microseconds)."""
    if category.file_format is FileFormat.AVRO:
        out: list[Row] = []
        for rec in fastavro.reader(io.BytesIO(data)):
            row = dict(rec)  # type: ignore[arg-type]
            for k, v in row.items():
                if isinstance(v, dt.datetime):
                    row[k] = int((v - _EPOCH) / dt.timedelta(microseconds=1))
            out.append(row)
        return out
    rows: list[Row] = []
    for line in gzip.decompress(data).splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        for key in ("event_time", "ingest_time"):
            if row.get(key) is not None:
                t = dt.datetime.fromisoformat(row[key].replace("Z", "+00:00"))
                row[key] = int((t - _EPOCH) / dt.timedelta(microseconds=1))
        for f in category.fields:
            if f.type is FieldType.TIMESTAMP and row.get(f.name) is not None:
                t = dt.datetime.fromisoformat(row[f.name].replace("Z", "+00:00"))
                row[f.name] = int((t - _EPOCH) / dt.timedelta(microseconds=1))
        if category.payload_format is PayloadFormat.BYTES:
            row["payload"] = base64.b64decode(row["payload"])
        rows.append(row)
    return rows
