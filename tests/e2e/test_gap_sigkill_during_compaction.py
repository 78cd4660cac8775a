"""G1/G2/G3 gap: a real SIGKILL of a replicator worker *during* compaction while a second worker finalizes the same
partitions: racing them (finalization claims off), or taking the victim's claimed partitions over once its claims
expire (claims of 10 s; also with every partition finalized in 3 shards, claimed and committed per shard). GCS
uploads are slowed by the fault proxy so the finalization is long enough to be caught in the middle: the victim is
killed only once a data file of an uncommitted generation exists (asserted, so the test cannot pass without
exercising that window; with claims, a data file of a partition the victim claims). While the survivor works, a
reader following the manifests must never meet a missing file or a ``_SUCCESS`` without a manifest of every shard;
at the end every event is committed exactly once. Real processes.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import time
from pathlib import Path

import pytest
from replicator_harness import Isolated, isolated, wait_for

from replicator.layout import manifest_generation, manifest_shard, part_shard_generation
from replicator.scan import list_manifests
from replicator.synth import make_envelope
from service.local.endpoints import Endpoints
from tests.faults.http_proxy import FaultProxy, FaultRule

pytestmark = pytest.mark.e2e

WORKER = (
    "--lease-extension-seconds",
    "10",
    "--lateness-seconds",
    "0",
    "--finalize-interval",
    "1",
    "--target-file-bytes",
    "4096",
    "--drain-timeout",
    "5",
    "--receive-window",  # the finalizing workers start on an empty subscription: close after 5 s, not 120
    "5",
)
CATEGORIES = ["ads_click", "login_event"]


def _logs(iso: Isolated) -> list[str]:
    return [o.name for o in iso.store().list("logs/")]


def _uncommitted_data_file(names: list[str], within: set[str] | None = None) -> bool:
    """A data file of generation N of a shard exists whose partition has no manifest of that shard's generation N
    yet: a compaction in progress (in one of the partition paths ``within``, if given)."""
    manifests = {
        (n.rsplit("/", 1)[0], manifest_shard(n), manifest_generation(n)) for n in names if manifest_shard(n) is not None
    }
    for n in names:
        d = n.rsplit("/", 1)[0]
        in_scope = within is None or d.removeprefix("logs/") in within
        part = part_shard_generation(n)
        if part is not None and (d, *part) not in manifests and in_scope:
            return True
    return False


def _claimed_by(iso: Isolated, pid: int) -> set[str]:
    """The partition paths (``<category>/YYYY/MM/DD/HH``) of the finalization claims (of any shard) that the worker
    ``pid`` holds."""
    return {
        re.sub(r"/s\d\dof\d\d$", "", o.name.removeprefix("claims/").rsplit("/", 1)[0])
        for o in iso.store().list("claims/")
        if o.metadata.get("writer", "").endswith(f":{pid}")
    }


def _reader_sees_a_consistent_bucket(iso: Isolated) -> None:
    """G3: every file named by a manifest exists, and ``_SUCCESS`` only sits next to a manifest of every shard."""
    manifests = list(list_manifests(iso.store(), CATEGORIES))  # first: its files predate each manifest
    names = set(_logs(iso))
    for _, m in manifests:
        missing = [f.name for f in m.files if f.name not in names]
        assert not missing, f"manifest g{m.generation} of {m.partition_label} names missing files {missing}"
    for n in names:
        if n.endswith("/_SUCCESS"):
            d = n.rsplit("/", 1)[0]
            shards = {s for x in names if x.startswith(d + "/") and (s := manifest_shard(x)) is not None}
            assert shards and len(shards) == next(iter(shards)).count, f"{n} without a manifest of every shard"


@pytest.mark.parametrize(("claim_seconds", "shards"), [("0", 1), ("10", 1), ("10", 3)])
def test_sigkill_during_compaction_with_two_workers_racing(
    local_cloud: Endpoints, tmp_path: Path, claim_seconds: str, shards: int
) -> None:
    iso = isolated(local_cloud, tmp_path, ack_deadline=10, finalize_shards=shards)
    proxy = FaultProxy(local_cloud.gcs_url, seed=3).start()
    try:
        now = dt.datetime.now(dt.UTC)
        hours = [(now - dt.timedelta(hours=h)).replace(minute=0, second=0, microsecond=0) for h in (3, 4)]
        envs, expected = [], set()
        for k in range(24):
            cat = CATEGORIES[k % 2]
            eids = [f"{cat}-{k}-{i}" for i in range(40)]
            if k >= 4:
                eids[0] = f"{cat}-{k - 4}-1"  # the same event in another envelope (a retry via another front-end)
            envs.append(make_envelope(cat, eids, hours[k % 4 // 2] + dt.timedelta(minutes=k), payload_bytes=300))
            expected.update(eids)

        # 1. Land everything without finalizing, so both finalizers later race over the same staged partitions.
        lander = iso.start_replicator(*WORKER, "--tier", "core", "--no-finalize", name="lander")
        iso.publish("core", envs)
        wait_for(lambda: len(iso.staged()) >= len(envs), 60, what="every envelope staged")
        lander.send_signal(signal.SIGTERM)
        assert lander.wait(timeout=60) == 0, iso.logs_tail()

        # 2. Two finalizing workers behind a slow GCS; SIGKILL one in the middle of a compaction.
        proxy.add(FaultRule("delay:0.4", method="POST", times=-1))
        env = iso.env(STORAGE_EMULATOR_HOST=proxy.url)
        claims = ("--finalize-claim-seconds", claim_seconds)
        victim = iso.start_replicator(*WORKER, *claims, "--tier", "core", name="victim", env=env)
        survivor = iso.start_replicator(*WORKER, *claims, "--tier", "core", name="survivor", env=env)
        if claim_seconds == "0":
            wait_for(lambda: _uncommitted_data_file(_logs(iso)), 60, 0.05, "a compaction in progress")
        else:
            wait_for(
                lambda: _uncommitted_data_file(_logs(iso), _claimed_by(iso, victim.pid)),
                60,
                0.05,
                "a compaction in progress in a partition the victim claims",
            )
        os.killpg(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL

        # 3. While the survivor finishes (and redoes the victim's partitions), readers see only committed data.
        deadline = time.monotonic() + 150
        while set(iso.committed(CATEGORIES)) != expected:
            assert time.monotonic() < deadline, f"not every event committed\n{iso.logs_tail()}"
            _reader_sees_a_consistent_bucket(iso)
            time.sleep(0.5)
        _reader_sees_a_consistent_bucket(iso)
        counts = iso.committed(CATEGORIES)
        assert {k: v for k, v in counts.items() if v != 1} == {}
        sources = [(m.shard, s) for _, m in list_manifests(iso.store(), CATEGORIES) for s in m.sources]
        assert len(sources) == len(set(sources)), "a staging object was consumed by two generations of a shard"
        assert {m.shard.count for _, m in list_manifests(iso.store(), CATEGORIES)} == {shards}
        assert survivor.poll() is None, iso.logs_tail()
        if claim_seconds != "0":
            # The victim's last request may still commit after the kill (a POST the slow proxy already holds), so
            # the events can all be committed before the takeover; the partition still lacks _SUCCESS and a
            # released claim, which only the survivor, after the claim's 10 s, can give it.
            wait_for(lambda: "the claim of" in iso.logs[-1].read_text(), 60, what="the survivor taking over the claim")
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0, iso.logs_tail()
    finally:
        iso.stop_all()
        proxy.stop()
