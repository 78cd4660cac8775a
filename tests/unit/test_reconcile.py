"""The judge of G1/G2 must catch loss, duplicates and events that should not exist."""

from __future__ import annotations

from collections import Counter

import pytest

from service.demo.reconcile import judge

pytestmark = pytest.mark.unit


def test_exact_match_is_ok() -> None:
    v = judge(["a", "b"], Counter(["a", "b"]))
    assert v.ok and v.acked == 2 and v.found == 2


def test_loss_duplicate_and_unexpected_are_caught() -> None:
    v = judge(["a", "b", "c"], Counter(["a", "a", "b", "zz"]))
    assert v.lost == ("c",) and v.duplicated == ("a",) and v.unexpected == ("zz",) and not v.ok


def test_maybe_ids_may_appear_once_but_not_twice() -> None:
    assert judge(["a"], Counter(["a", "m"]), maybe=["m"]).ok
    assert judge(["a"], Counter(["a"]), maybe=["m"]).ok
    assert not judge(["a"], Counter(["a", "m", "m"]), maybe=["m"]).ok


def test_problems_fail_the_verdict() -> None:
    assert not judge(["a"], Counter(["a"]), ["crc mismatch"]).ok
