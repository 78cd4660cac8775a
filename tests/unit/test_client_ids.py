"""UUIDv7: version, variant, time prefix, and order within a process."""

from __future__ import annotations

import uuid

import pytest

from service.client.ids import uuid7, uuid7_str
from service.frontend.validate import UUID_RE

pytestmark = pytest.mark.unit


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
