"""UUIDv7: version, variant, time prefix, and order within a process."""

from __future__ import annotations

import uuid

import pytest

from service.client import ids
from service.client.ids import uuid7, uuid7_str, uuid7_unix_ms
from service.frontend.validate import UUID_RE

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _restore_the_id_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """``uuid7(now_ns=...)`` in 2027 moves the process-wide floor; later tests must get ids of the real time."""
    monkeypatch.setattr(ids, "_last_ms", ids._last_ms)
    monkeypatch.setattr(ids, "_counter", ids._counter)


def test_layout() -> None:
    u = uuid7(now_ns=1_800_000_000_123_000_000)
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert u.int >> 80 == 1_800_000_000_123


def test_monotonic_and_unique_even_within_one_millisecond() -> None:
    ids = [uuid7(now_ns=1_800_000_000_000_000_000) for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert ids == sorted(ids, key=lambda u: u.int >> 62)  # time + counter order


def test_string_form_is_what_the_front_end_accepts() -> None:
    assert UUID_RE.fullmatch(uuid7_str())


def test_unix_ms_reads_back_the_time_of_a_canonical_uuid7() -> None:
    u = str(uuid.UUID(int=1_800_000_000_123 << 80 | 0x7ABC << 64 | 0b10 << 62 | 12345))  # no uuid7(): keeps its floor
    assert uuid7_unix_ms(u) == 1_800_000_000_123
    assert uuid7_unix_ms(uuid7_str()) is not None


@pytest.mark.parametrize(
    "value",
    [
        "",
        str(uuid.uuid4()),
        "01a2181d-2e93-7000-c109-a0979a621dea",  # variant 0b11
        "01A2181D-2E93-7000-8109-A0979A621DEA",  # not lowercase
        "{01a2181d-2e93-7000-8109-a0979a621dea}",
        "01a2181d2e9370008109a0979a621dea",
        "01a2181d-2e93-7000-8109-a0979a621dex",
    ],
)
def test_unix_ms_is_none_for_anything_but_a_canonical_uuid7(value: str) -> None:
    assert uuid7_unix_ms(value) is None
