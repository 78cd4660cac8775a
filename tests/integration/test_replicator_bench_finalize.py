"""``logpipe bench finalize`` end to end at a small size: its own emulators, partitions landed into staging, then two
real ``logpipe replicate`` workers per phase (claims off, then on, then on with 2 shards per partition). Every event
must be committed in each phase, and with claims no worker may lose a commit race (real processes against
fake-gcs-server: the claims work there); with shards, every partition is committed by both shards' manifests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_small_finalize_bench_commits_everything_in_both_phases(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable, "-m", "service.cli", "bench", "finalize", "--partitions", "3",
            "--events-per-partition", "2000", "--workers", "2", "--out-dir", str(tmp_path),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "claims / no claims" in out.stdout
    (path,) = tmp_path.glob("finalize-*.json")
    report = json.loads(path.read_text())
    assert report["staging_objects"] == 3 * 2
    for phase in ("no_claims", "claims", "shards"):
        assert report[phase]["events"] == 3 * 2000, phase  # every landed event committed once, in generation 1
        assert report[phase]["worker_cpu_seconds"] > 0
    assert report["claims"]["merged_twice"] == 0, "with claims, two workers merged the same partition"
    assert report["claims_vs_no_claims"] > 0 and report["shards_vs_claims"] > 0
    assert report["shards"]["merged_twice"] == 0, "with claims, two workers merged the same shard"
    assert report["shards"]["shard_manifests"] == 3 * 2, "each partition committed by its 2 shards"
