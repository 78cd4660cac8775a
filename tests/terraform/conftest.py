"""Fixtures for the Terraform tests: the fake providers (tests/fixtures/tf_provider) running for the session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "tf_provider"))

import tf_harness


@pytest.fixture(scope="session")
def fake_tf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tf_harness.FakeProviders]:
    """Both fake providers, started once; stopped by PID at the end of the session."""
    with tf_harness.FakeProviders(tmp_path_factory.mktemp("tf-providers")) as providers:
        yield providers
