"""JSON limits that BigQuery enforces on a ``JSON`` column, checked where events are accepted and where they land.

Contract: ``too_deep(payload)`` is True exactly when the well-formed JSON text ``payload`` nests arrays and objects
more than ``MAX_JSON_DEPTH`` levels deep (BigQuery's JSON type refuses deeper values, and one such row fails the
whole load job). It is meant for text already known to be well-formed; on other text its answer is unspecified but
it never raises. It costs two ``bytes.count`` calls unless the payload holds more than ``MAX_JSON_DEPTH`` opening
brackets.
"""

from __future__ import annotations

import re
from typing import Final

#: BigQuery: "JSON ... nesting up to 500 levels" (GoogleSQL, Work with JSON data, Limitations).
MAX_JSON_DEPTH: Final = 500
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENS = frozenset(b"[{")


def opening_brackets(payload: bytes) -> int:
    """An upper bound on ``payload``'s nesting depth: its ``[`` and ``{`` bytes, strings included."""
    return payload.count(b"[") + payload.count(b"{")


def too_deep(payload: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """See the module contract."""
    if opening_brackets(payload) <= limit:
        return False
    depth = 0
    for c in _STRING.sub(b"", payload).translate(None, _NOT_BRACKETS):
        if c in _OPENS:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False
