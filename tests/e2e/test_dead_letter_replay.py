"""G1 after a GCS outage that outlasts the subscription's delivery attempts: Pub/Sub moves the envelopes to the
dead-letter topic, `logpipe dead-letters list` shows them with their reason, and `logpipe dead-letters replay` puts
them back so they land exactly once (G2), even when a replay is repeated. A poison envelope dead-lettered by the
replicator is listed with its own reason and left alone by the default replay. Real processes, local cloud."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest
from replicator_harness import Isolated, isolated, wait_for

from replicator.synth import make_envelope
from service.local.endpoints import Endpoints

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "faults"))
from http_proxy import FaultProxy, FaultRule

pytestmark = pytest.mark.e2e

FAST = ("--lease-extension-seconds", "10", "--lateness-seconds", "0", "--finalize-interval", "1")
FAST += ("--drain-timeout", "5", "--max-messages", "4", "--nack-delay", "0.1", "--gcs-deadline", "2")


def dead_letters(iso: Isolated) -> list[dict[str, object]]:
    out = iso.cli("dead-letters", "list", "--tier", "core", "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_an_outage_that_outlasts_the_attempts_is_recovered_by_a_replay(local_cloud: Endpoints, tmp_path: Path) -> None:
    iso = isolated(local_cloud, tmp_path, ack_deadline=10, max_delivery_attempts=5)
    proxy = FaultProxy(local_cloud.gcs_url, seed=3).start()
    try:
        hour = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
        envs = [make_envelope("ads_click", [f"dl-{k}-{i}" for i in range(20)], hour) for k in range(3)]
        expected = {f"dl-{k}-{i}" for k in range(3) for i in range(20)}
        proxy.add(FaultRule("status:403", method="POST", match="/upload/", times=-1))  # every landing fails
        iso.start_replicator(*FAST, "--tier", "core", env=iso.env(STORAGE_EMULATOR_HOST=proxy.url))
        iso.publish("core", envs, raw=[(b"not an envelope", {"category": "ads_click", "envelope_id": "poison-1"})])

        def listed() -> bool:
            return len(dead_letters(iso)) == 4

        wait_for(listed, 120, 1.0, "three envelopes forwarded after 5 attempts, and the poison one dead-lettered")
        letters = {d["envelope_id"]: d for d in dead_letters(iso)}
        assert {e.envelope_id for e in envs} | {"poison-1"} == set(letters)
        for e in envs:
            assert letters[e.envelope_id]["reason"] == "max_delivery_attempts"
            assert letters[e.envelope_id]["replayable"] is True
        assert letters["poison-1"]["reason"] != "max_delivery_attempts"
        assert iso.staged() == [], "nothing may land while GCS refuses"
        assert len(dead_letters(iso)) == 4, "list removed dead letters"

        proxy.clear()  # the outage is over
        first = iso.cli("dead-letters", "replay", "--tier", "core")
        assert first.returncode == 0, first.stderr
        assert "core: replayed 3, left 1 of other reasons" in first.stdout
        # The same envelope published again, as an interrupted replay (republished, not yet acked) would.
        iso.publish("core", envs[:1])
        again = iso.cli("dead-letters", "replay", "--tier", "core")
        assert "core: replayed 0, left 1 of other reasons" in again.stdout, again.stdout + again.stderr

        try:
            wait_for(lambda: set(iso.committed()) == expected, 120, 0.5, "every replayed event committed")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{iso.logs_tail()}") from None
        assert {k: v for k, v in iso.committed().items() if v != 1} == {}
        assert [d["envelope_id"] for d in dead_letters(iso)] == ["poison-1"]
    finally:
        iso.stop_all()
        proxy.stop()
