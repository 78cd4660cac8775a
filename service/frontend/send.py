"""``logpipe send``: JSON lines from a file or stdin -> ``IngestClient`` -> counts on stdout, reasons on stderr.

Line shape: ``{"payload": <JSON value or string>, "event_time": "<RFC 3339>", "attributes": {...}, "event_id": "...",
"producer": "..."}``; only ``payload`` is required. A string payload is sent as its text; any other JSON value is sent
serialized. Blank lines are skipped. A malformed line is reported with its line number and nothing is sent (exit 2);
so is an unreadable ``--ca-cert`` or an empty ``--target``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import IO, Any

from service.contract import Event

_KEYS = {"payload", "event_time", "attributes", "event_id", "producer"}


class BadLine(ValueError):
    def __init__(self, lineno: int, reason: str) -> None:
        super().__init__(f"line {lineno}: {reason}")


def parse_line(line: str, lineno: int, category: str) -> Event:
    """One JSON line -> an Event. Raises ``BadLine``."""
    from service.client.errors import InvalidEvent
    from service.client.events import make_event

    try:
        obj: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(lineno, f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict) or "payload" not in obj:
        raise BadLine(lineno, 'expected an object with a "payload" key')
    unknown = set(obj) - _KEYS
    if unknown:
        raise BadLine(lineno, f"unknown keys {sorted(unknown)}")
    when = None
    if obj.get("event_time") is not None:
        try:
            when = dt.datetime.fromisoformat(str(obj["event_time"]).replace("Z", "+00:00"))
        except ValueError:
            raise BadLine(lineno, f"event_time {obj['event_time']!r} is not RFC 3339") from None
        if when.tzinfo is None:
            raise BadLine(lineno, "event_time needs a UTC offset (e.g. Z)")
    attrs = obj.get("attributes") or {}
    if not isinstance(attrs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
        raise BadLine(lineno, "attributes must be an object of strings")
    for key in ("event_id", "producer"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise BadLine(lineno, f"{key} must be a string")
    try:
        return make_event(category, obj["payload"], event_time=when, attributes=attrs, event_id=obj.get("event_id"),
                          producer=obj.get("producer") or "")  # fmt: skip
    except InvalidEvent as exc:
        raise BadLine(lineno, str(exc)) from None


def run_send(
    stream: IO[str], *, category: str, target: str, token: str | None, tls: bool, ca_cert: Path | None, batch: int
) -> int:
    """Returns the exit code: 0 all accepted, 1 some rejected/failed, 2 bad input."""
    from service.client import ClientOptions, IngestClient

    events: list[Event] = []
    for lineno, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            events.append(parse_line(line, lineno, category))
        except BadLine as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        roots = ca_cert.read_bytes() if ca_cert else None
    except OSError as exc:
        print(f"error: cannot read --ca-cert {ca_cert}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    options = ClientOptions(max_batch_events=max(1, batch))
    try:
        client = IngestClient(target, token=token, tls=tls or roots is not None, root_certificates=roots,
                              options=options)  # fmt: skip
    except ValueError as exc:  # the target list (parse_targets)
        print(f"error: --target {target!r}: {exc}", file=sys.stderr)
        return 2
    with client:
        for e in events:
            client.send_event(e)
        result = client.flush()
    print(f"accepted {result.accepted} rejected {len(result.rejected)} failed {len(result.failed)}")
    for r in result.rejected:
        print(f"rejected {r.event_id}: {r.code}: {r.message}", file=sys.stderr)
    for f in result.failed:
        print(f"failed {f.event_id}: {f.grpc_code}: {f.message}", file=sys.stderr)
    return 0 if result.ok else 1
