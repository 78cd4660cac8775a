"""Shared fixtures. The local cloud is started once per test run with the same code as ``logpipe local``.

Fixtures:
  * ``local_cloud_config`` (session): the ``LocalConfig`` used, state under a pytest tmp dir, emulators only
    (no front-ends or replicators: tests that need those start their own processes against ``local_cloud``).
  * ``local_cloud`` (session): the ``Endpoints`` of the running stack. Build clients with
    ``service.local.clients`` (``pubsub_publisher``, ``pubsub_subscriber``, ``storage_client``, ``bigquery_client``);
    they take their addresses from the Endpoints, not from environment variables.

A missing prerequisite (no java, no emulator venv, ...) FAILS every test that uses the stack, with the launcher's
one-line message; nothing is skipped. The stack is stopped at the end of the session, also after failures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.cli import GCS_BUCKET_METADATA_SWITCH
from service.local.config import LocalConfig
from service.local.endpoints import Endpoints
from service.local.errors import LocalCloudError
from service.local.launcher import LocalCloud

# As `logpipe` does for its processes: no background bucket-metadata threads from the storage clients tests build
# (they outlived their tests and retried against stopped servers).
os.environ.setdefault(GCS_BUCKET_METADATA_SWITCH, "true")


@pytest.fixture(scope="session")
def local_cloud_config(tmp_path_factory: pytest.TempPathFactory) -> LocalConfig:
    state: Path = tmp_path_factory.mktemp("local-cloud")
    return LocalConfig(state_dir=state, frontends=0, replicators=0, loaders=0)


@pytest.fixture(scope="session")
def local_cloud(local_cloud_config: LocalConfig) -> Iterator[Endpoints]:
    cloud = LocalCloud(local_cloud_config)
    try:
        endpoints = cloud.start()
    except LocalCloudError as exc:
        pytest.fail(f"local cloud did not start: {exc}", pytrace=False)
    try:
        yield endpoints
    finally:
        cloud.stop()
