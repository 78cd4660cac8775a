"""UUIDv7 ids (RFC 9562), made on the client so that a retried event keeps its id.

Python 3.11 has no ``uuid.uuid7``. Layout: 48-bit Unix milliseconds, version 7, 12 bits of sub-millisecond counter
(monotonic within this process, so ids made in one process sort by creation), variant, 62 random bits.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
import uuid

#: Canonical lowercase hyphenated UUIDv7: version nibble 7, variant 0b10 (first hex digit of the 4th group 8-b).
_UUID7_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7(now_ns: int | None = None) -> uuid.UUID:
    """A new UUIDv7. Thread-safe; never blocks on I/O. ``now_ns`` overrides the clock (tests)."""
    global _last_ms, _counter
    ms = (now_ns if now_ns is not None else time.time_ns()) // 1_000_000
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next millisecond
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    return uuid.UUID(int=value)


def uuid7_str() -> str:
    """``str(uuid7())``: the canonical lowercase hyphenated form the front-end requires."""
    return str(uuid7())


def uuid7_unix_ms(value: str) -> int | None:
    """The Unix milliseconds in the first 48 bits of ``value`` when it is a UUIDv7 in the canonical form ``uuid7_str``
    makes (lowercase, hyphenated), else None. Never raises."""
    if len(value) != 36 or _UUID7_RE.fullmatch(value) is None:
        return None
    return int(value[:8] + value[9:13], 16)


def uuid7_lower_bound(at: dt.datetime) -> str:
    """``at``'s Unix milliseconds (floored; 0 before 1970) as the first two groups of the canonical form,
    ``xxxxxxxx-xxxx``. In string order, a canonical UUIDv7 sorts at or after it iff its timestamp is at or after that
    millisecond. So every ``uuid7_str`` made at or after ``at`` does (its timestamp is never earlier than its making:
    the counter only borrows forward), and one whose timestamp is a millisecond before does not. ``at`` is aware."""
    ms = max((at - _EPOCH) // dt.timedelta(milliseconds=1), 0)
    digits = f"{ms:012x}"
    return f"{digits[:8]}-{digits[8:]}"
