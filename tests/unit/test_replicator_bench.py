"""``logpipe bench replicate``: how many messages the bare baselines move."""

from __future__ import annotations

from typer.testing import CliRunner

from replicator.bench import baseline_count
from service.cli import app


def test_baselines_default_to_the_landing_backlog() -> None:
    # 1M events in 1000-event envelopes: the baselines move 1000 messages, like the landing.
    assert baseline_count(1_000_000, 1000, None) == 1000
    assert baseline_count(100_000, 1000, None) == 100


def test_requested_baseline_is_capped_by_the_backlog() -> None:
    assert baseline_count(1_000_000, 1000, 300) == 300
    assert baseline_count(100_000, 1000, 5000) == 100
    assert baseline_count(10, 1000, None) == 1


def test_non_positive_baseline_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["bench", "replicate", "--baseline-envelopes", "0"])
    assert result.exit_code == 2
    assert "--baseline-envelopes" in result.output
