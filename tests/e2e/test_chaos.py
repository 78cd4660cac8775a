"""Chaos suite (G1-G4 on real processes): SIGKILLs, a Pub/Sub outage, GCS faults; then acked = landed = queried.

``make test`` runs a short version; ``make chaos`` runs the full one (LOGPIPE_CHAOS_SCALE=full: 200k events, 12
replicator kills, a 30 s Pub/Sub cut). LOGPIPE_CHAOS_SEED replays a run; the seed is printed either way.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from chaos_harness import ChaosConfig, ChaosReport, run_chaos

pytestmark = pytest.mark.e2e
_FULL = os.environ.get("LOGPIPE_CHAOS_SCALE") == "full"


def _config() -> ChaosConfig:
    seed = int(os.environ.get("LOGPIPE_CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
    if _FULL:
        return ChaosConfig(
            seed=seed,
            events=200_000,
            duration_s=150,
            replicator_kills=12,
            pubsub_cut_s=30,
            spread_s=3 * 3600,
            drain_timeout_s=1800,
        )
    # One replicator SIGKILL in the short run: the Pub/Sub emulator keeps a killed subscriber's stream as a zombie and
    # redelivers to it again with a chance of zombies/(zombies + live) every stream ack deadline (10 s here, from the
    # replicators' --lease-extension-seconds), so each extra kill lengthens the
    # drain geometrically (docs/design.md, "End-to-end verification"). The full run (make chaos) kills 12 times.
    return ChaosConfig(seed=seed, events=15_000, duration_s=40, replicator_kills=1, pubsub_cut_s=8)


@pytest.mark.timeout(2700 if _FULL else 1200)  # the full run may drain for 30 min (emulator zombie streams)
def test_chaos_acked_equals_landed_equals_queried(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config()
    print(f"\nchaos seed: {cfg.seed}")
    # Outside pytest's tmp_path, which keeps only the last 3 sessions: a failure's process logs must survive.
    state = Path(tempfile.mkdtemp(prefix=f"logpipe-chaos-{cfg.seed}-"))
    try:
        report = run_chaos(cfg, state / "stack")
        with capsys.disabled():
            print("\n" + "\n".join(f"  {line}" for line in report.lines()))
        _verdict(cfg, report)
    except BaseException:
        print(f"chaos: logs kept in {state / 'stack' / 'logs'}")
        raise
    shutil.rmtree(state, ignore_errors=True)


def _verdict(cfg: ChaosConfig, report: ChaosReport) -> None:
    assert report.gcs is not None and report.bigquery is not None
    kills = [f for f in report.faults if "SIGKILL replicator" in f]
    assert len(kills) >= cfg.replicator_kills, report.faults
    assert any("pubsub cut" in f for f in report.faults)
    # G5: every invalid event was answered with its own reason.
    assert report.invalid_reported == report.invalid_expected
    # G1 + G2: every acked event exactly once in the committed files and in BigQuery; nothing that was rejected.
    assert report.gcs.ok, (
        f"seed {cfg.seed}: {report.gcs.summary()} lost={report.gcs.lost[:5]} dup={report.gcs.duplicated[:5]}"
    )
    assert report.bigquery.ok, f"seed {cfg.seed}: {report.bigquery.summary()}"
    assert len(report.load.acked) > 0.9 * cfg.events, "too few events acked for the run to mean anything"
