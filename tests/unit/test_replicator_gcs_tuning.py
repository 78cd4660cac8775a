"""The landing path's adjustments of google-cloud-storage: the same bytes on the wire, and the private names exist."""

from __future__ import annotations

import os
import random

import pytest

from replicator import gcs_tuning

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("size", [0, 1, 1000, 480_000, 9 * 1024 * 1024])
def test_multipart_body_is_byte_identical_to_the_library(size: int) -> None:
    data = os.urandom(size)
    metadata = {"name": "staging/ads_click/2026/11/26/13/e.pb.zst", "metadata": {"envelope_id": "é", "n": "1"}}
    random.seed(size)  # the boundary comes from the random module
    expected = gcs_tuning.LIBRARY_CONSTRUCT_MULTIPART(data, metadata, "application/vnd.logpipe.envelope+zstd")
    random.seed(size)
    assert gcs_tuning.construct_multipart_request(data, metadata, "application/vnd.logpipe.envelope+zstd") == expected


def test_apply_installs_both_and_is_idempotent() -> None:
    gcs_tuning.apply()
    gcs_tuning.apply()
    assert gcs_tuning._upload.construct_multipart_request is gcs_tuning.construct_multipart_request
    assert gcs_tuning.blob_module._MAX_MULTIPART_SIZE >= gcs_tuning.SINGLE_REQUEST_LIMIT
    assert gcs_tuning.LIBRARY_CONSTRUCT_MULTIPART is not gcs_tuning.construct_multipart_request
