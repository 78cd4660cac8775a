"""Crash-and-resume at every protocol step: SIGKILL-equivalent exit (os._exit) at step k, restart, drain, and read
every committed file back through the manifests: the set of event_ids equals the set published (= acked by a
front-end), each exactly once. Real processes, the local cloud."""

from __future__ import annotations

import datetime as dt
import json
import signal
from pathlib import Path

import pytest
from replicator_harness import Isolated, isolated, wait_for

from replicator.synth import make_envelope
from service.envelope import EncodedEnvelope
from service.local.endpoints import Endpoints

pytestmark = pytest.mark.e2e

FAST = (
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
    "--receive-window",  # a survivor restarted on a drained subscription closes after 5 s, not 120
    "5",
    "--finalize-claim-seconds",  # a survivor takes over the partition a crashed finalizer claimed after 10 s, not 180
    "10",
)


def workload(hour: dt.datetime, n: int = 12) -> tuple[list[EncodedEnvelope], set[str]]:
    """n envelopes of 20 events in ``hour``; one spans into the next hour; one event id repeats in two envelopes."""
    envs: list[EncodedEnvelope] = []
    ids: set[str] = set()
    for k in range(n):
        eids = [f"ev-{k}-{i}" for i in range(20)]
        times: list[dt.datetime] = [hour + dt.timedelta(minutes=k * 3 + i % 3) for i in range(20)]
        if k == n - 1:
            times[-5:] = [hour + dt.timedelta(minutes=61)] * 5
        if k == 3:
            eids[0] = "ev-0-0"  # the same event sent through another front-end
        envs.append(make_envelope("ads_click", eids, times, payload_bytes=200))
        ids.update(eids)
    return [*envs, envs[2]], ids  # plus a duplicate publish of envelope 2


POISON = [
    (b"not a zstd frame", {"logpipe_format": "logpipe.v1.Envelope", "logpipe_compression": "zstd"}),
    (b"whatever", {"logpipe_format": "something-else"}),
]


def drain_and_check(iso: Isolated, expected: set[str]) -> None:
    try:
        # 180 s: the victim's messages come back only when their lease runs out. With exactly-once delivery the
        # Pub/Sub client extends leases by at least 60 s, and the emulator redelivered after ~90 s in two CI runs.
        wait_for(lambda: set(iso.committed()) == expected, 180, 0.5, "every published event committed")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{iso.logs_tail()}") from None
    counts = iso.committed()
    assert {k: v for k, v in counts.items() if v != 1} == {}
    assert set(counts) == expected


@pytest.mark.parametrize(
    "crash_at",
    [
        "land.before_upload:4",
        "land.after_upload:4",
        "dead_letter.after_publish:1",
        "finalize.after_data_file:2",
        "finalize.after_manifest:1",
    ],
)
def test_crash_at_each_step_then_resume(local_cloud: Endpoints, tmp_path: Path, crash_at: str) -> None:
    iso = isolated(local_cloud, tmp_path, ack_deadline=10)  # the victim's leases expire fast
    try:
        hour = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
        envs, expected = workload(hour)
        iso.publish("core", envs, raw=POISON)
        victim = iso.start_replicator(*FAST, "--tier", "core", crash_at=crash_at, wait_ready=False)
        assert victim.wait(timeout=120) == 137, iso.logs[-1].read_text()
        assert f"crashing at {crash_at}" in iso.logs[-1].read_text()
        survivor = iso.start_replicator(*FAST, "--tier", "core")
        drain_and_check(iso, expected)
        dead = iso.pull_dead_letters("core", want=2)
        assert {m.attributes["reason"] for m in dead} >= {"bad_compression", "unknown_format"}
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=60) == 0, iso.logs[-1].read_text()
    finally:
        iso.stop_all()


def test_late_data_after_commit_becomes_a_delta_generation(local_cloud: Endpoints, tmp_path: Path) -> None:
    iso = isolated(local_cloud, tmp_path)
    try:
        hour = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
        early = [make_envelope("login_event", [f"e{i}-{k}" for k in range(10)], hour) for i in range(3)]
        iso.publish("core", early)
        iso.start_replicator("--no-finalize", "--tier", "core")
        wait_for(lambda: len(iso.staged()) == 3, 60, what="3 staged objects")
        assert '"state": "open"' in iso.cli("partitions", "--json", "--category", "login_event").stdout
        out = iso.finalize("--before", "now")
        assert out.returncode == 0, out.stderr
        assert "g0001 events=30" in out.stdout
        late = make_envelope("login_event", ["late-1", "e0-0"], hour)  # e0-0 is a retry of a committed event
        iso.publish("core", [late])
        wait_for(lambda: len(iso.staged()) == 4, 60, what="late staged object")
        assert '"state": "committed"' in iso.cli("partitions", "--json", "--category", "login_event").stdout
        out = iso.finalize("--before", "now")
        assert "g0002 events=1 files=1 duplicates=1" in out.stdout, out.stdout + out.stderr
        [row] = [json.loads(line) for line in iso.cli("partitions", "--json").stdout.splitlines()]
        assert (row["state"], row["generations"], row["committed_events"], row["pending_staging"]) == (
            "complete",
            2,
            31,
            0,
        )
        assert (row["claimed_by"], row["claim_expires"]) == (None, None)  # nobody finalizes it now
        counts = iso.committed()
        assert len(counts) == 31 and set(counts.values()) == {1}
    finally:
        iso.stop_all()
