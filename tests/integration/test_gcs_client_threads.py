"""google-cloud-storage's background bucket-metadata fetch is off in logpipe's processes (``service.cli``), and the
switch really stops the pinned library from starting those threads."""

from __future__ import annotations

import threading

import pytest

from service.cli import GCS_BUCKET_METADATA_SWITCH
from service.local import clients
from service.local.endpoints import Endpoints

pytestmark = pytest.mark.integration


def _metadata_threads_started(endpoints: Endpoints) -> list[str]:
    """Names of the metadata threads started while a storage client lists and reads in the landing bucket."""
    started: list[str] = []
    real_start = threading.Thread.start

    def spy(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(threading.Thread, "start", spy)
        client = clients.storage_client(endpoints)
        list(client.list_blobs(endpoints.bucket, max_results=1))
        client.bucket(endpoints.bucket).blob("no-such-object").exists()
        client.close()
    return [name for name in started if "_fetch_background" in name or "_verify_existence" in name]


def test_switch_on_starts_no_metadata_thread(local_cloud: Endpoints, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GCS_BUCKET_METADATA_SWITCH, "true")
    assert _metadata_threads_started(local_cloud) == []


def test_switch_off_the_library_starts_them(local_cloud: Endpoints, monkeypatch: pytest.MonkeyPatch) -> None:
    # The control: without the switch the pinned library does start them, so the test above can fail.
    monkeypatch.setenv(GCS_BUCKET_METADATA_SWITCH, "false")
    assert _metadata_threads_started(local_cloud) != []
