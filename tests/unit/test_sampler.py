"""``sampler.trend``: the soak's flatness judge (warm-up excluded, steady growth caught)."""

from __future__ import annotations

import math

import pytest

from service.demo.sampler import trend

pytestmark = pytest.mark.unit


def _samples(values: list[float], name: str = "replicator-0") -> list[dict[str, object]]:
    return [{"t": float(i), "name": name, "rss_mb": v} for i, v in enumerate(values)]


def test_warm_up_growth_is_not_counted() -> None:
    values = [20.0, 60.0, 90.0, 100.0] + [100.0] * 16  # climbs in the first 20%, then flat
    t = trend(_samples(values), "replicator-0", "rss_mb")
    assert t["growth_pct"] == pytest.approx(0.0)
    assert t["start"] == 20.0 and t["peak"] == 100.0


def test_steady_growth_after_warm_up_is_reported() -> None:
    values = [100.0 + 5.0 * i for i in range(40)]  # a leak: +5 MB per sample throughout
    t = trend(_samples(values), "replicator-0", "rss_mb")
    assert t["growth_pct"] > 25.0


def test_other_processes_and_short_series_are_not_judged() -> None:
    samples = _samples([1.0] * 20, name="pubsub") + _samples([1.0, 2.0, 3.0])
    assert math.isnan(trend(samples, "replicator-0", "rss_mb")["growth_pct"])
    assert trend(samples, "pubsub", "rss_mb")["growth_pct"] == pytest.approx(0.0)


def test_a_pool_alive_only_during_passes_is_not_growth_but_a_step_that_stays_is() -> None:
    spikes = [1.0 if i % 3 else 9.0 for i in range(60)]  # threads that exist only while a pass converts
    assert trend(_samples(spikes), "replicator-0", "rss_mb")["growth_pct"] == pytest.approx(0.0)
    steps = [14.0] * 30 + [22.0] * 30  # a resource that grew and stayed
    assert trend(_samples(steps), "replicator-0", "rss_mb")["growth_pct"] > 25
