"""Retry policy, crash points, configuration, watermark, and the landing fast path's trust in envelope attributes."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from replicator.config import ReplicatorConfig
from replicator.crash import CrashPoints
from replicator.errors import ConfigError, StoreError
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.retry import RetryPolicy
from replicator.store import MemoryStore
from replicator.synth import make_envelope
from service.catalog import load_catalog
from service.envelope import decode as decode_envelope
from service.envelope import encode
from tests.unit.replicator_support import HeldHandler, offline_worker

pytestmark = pytest.mark.unit
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def monotonic(self) -> float:
        return self.now


def test_retry_retries_transient_errors_then_succeeds() -> None:
    t = FakeTime()
    errors = [gexc.ServiceUnavailable("x"), gexc.TooManyRequests("y"), requests.ConnectionError("reset")]
    seen: list[str] = []

    def fn() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert (
        RetryPolicy(deadline=10).call(fn, "create", "n", on_retry=seen.append, sleep=t.sleep, monotonic=t.monotonic)
        == "ok"
    )
    assert seen == ["create"] * 3


def test_retry_is_bounded_by_the_deadline() -> None:
    t = FakeTime()

    def fn() -> None:
        t.now += 0.5
        raise gexc.InternalServerError("always")

    with pytest.raises(StoreError) as err:
        RetryPolicy(deadline=10, max_backoff=1).call(fn, "read", "n", sleep=t.sleep, monotonic=t.monotonic)
    assert err.value.transient and 10 <= t.now <= 11.5


def test_permanent_error_is_not_retried() -> None:
    calls = []

    def fn() -> None:
        calls.append(1)
        raise gexc.Forbidden("no")

    with pytest.raises(StoreError) as err:
        RetryPolicy().call(fn, "create", "n", sleep=lambda s: None)
    assert not err.value.transient and calls == [1]


def _refresh_error_from_metadata_outage() -> auth_exc.RefreshError:
    """What GKE / Compute Engine credentials raise when the metadata server cannot be reached."""
    try:
        try:
            raise auth_exc.TransportError("Failed to retrieve token from the metadata service")
        except auth_exc.TransportError as e:
            raise auth_exc.RefreshError(e) from e  # as google.auth.compute_engine.credentials does
    except auth_exc.RefreshError as refresh:
        return refresh


@pytest.mark.parametrize(
    "error",
    [
        auth_exc.TransportError("metadata server unreachable"),
        _refresh_error_from_metadata_outage(),
        auth_exc.RefreshError("temporarily_unavailable", retryable=True),
    ],
    ids=["transport", "refresh-caused-by-transport", "refresh-retryable"],
)
def test_a_failed_token_refresh_that_may_pass_is_retried(error: Exception) -> None:
    t = FakeTime()
    errors = [error, error]
    seen: list[str] = []

    def fn() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert RetryPolicy(deadline=10).call(fn, "create", "n", on_retry=seen.append, sleep=t.sleep,
                                         monotonic=t.monotonic) == "ok"  # fmt: skip
    assert seen == ["create"] * 2


def test_a_metadata_outage_past_the_deadline_is_a_transient_store_error() -> None:
    t = FakeTime()

    def fn() -> None:
        t.now += 1
        raise _refresh_error_from_metadata_outage()

    with pytest.raises(StoreError) as err:
        RetryPolicy(deadline=5).call(fn, "create", "n", sleep=t.sleep, monotonic=t.monotonic)
    assert err.value.transient and isinstance(err.value.__cause__, auth_exc.RefreshError)


@pytest.mark.parametrize(
    "error",
    [auth_exc.RefreshError("invalid_grant: account not found"), auth_exc.DefaultCredentialsError("no ADC")],
)
def test_a_refused_token_refresh_is_a_permanent_store_error_at_once(error: Exception) -> None:
    calls = []

    def fn() -> None:
        calls.append(1)
        raise error

    with pytest.raises(StoreError) as err:
        RetryPolicy().call(fn, "create", "n", sleep=lambda s: None)
    assert not err.value.transient and calls == [1]


def test_crash_point_parsing() -> None:
    assert CrashPoints.parse("land.after_upload:3") == CrashPoints("land.after_upload", 3)
    assert CrashPoints.parse("").step is None
    with pytest.raises(ValueError):
        CrashPoints.parse("no.such.step")
    CrashPoints.parse("land.after_upload:2").point("land.after_upload")  # first arrival: no crash


def test_config_from_env_and_flags() -> None:
    env = {"GOOGLE_CLOUD_PROJECT": "p", "LOGPIPE_BUCKET": "bkt", "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}
    cfg = ReplicatorConfig.from_sources({"bucket": "flag-bucket", "threads": None}, env)
    assert (cfg.project, cfg.bucket, cfg.threads, cfg.storage_emulator_host) == (
        "p",
        "flag-bucket",
        8,
        env["STORAGE_EMULATOR_HOST"],
    )
    with pytest.raises(ConfigError):
        ReplicatorConfig.from_sources({"max_bytes": 1024}, env)  # below one Pub/Sub message
    with pytest.raises(ConfigError):
        ReplicatorConfig.from_sources({}, {**env, "LOGPIPE_CRASH_AT": "bogus"})


def test_watermark_waits_for_held_messages() -> None:
    now = H + dt.timedelta(hours=1, minutes=15)
    cfg = ReplicatorConfig(project="p", bucket="bkt", lateness_seconds=600)
    w = offline_worker(cfg, clock=lambda: now)
    p = Partition("ads_click", H)
    assert w.closable(p)  # 13:00-14:00 + 10 min lateness < 14:15
    w._handlers = [HeldHandler(H + dt.timedelta(minutes=65))]  # type: ignore[list-item]
    assert not w.closable(p)  # still landing a message published at 14:05
    assert not w.closable(Partition("ads_click", H + dt.timedelta(hours=1)))


def test_lying_attributes_are_counted_at_finalization_not_lost() -> None:
    store, metrics = MemoryStore(), Metrics()
    enc = make_envelope("ads_click", ["in", "out"], [H, H + dt.timedelta(hours=2)])
    env = decode_envelope(enc.data, enc.attributes)
    attrs = dict(encode(env).attributes, max_event_time=enc.attributes["min_event_time"])  # claims one hour
    landed = Lander(store, ["ads_click"], metrics).land(enc.data, attrs)
    assert len(landed.names) == 1
    [m] = Finalizer(store, load_catalog(), metrics, FinalizeSettings()).finalize_partition(Partition("ads_click", H))
    assert m.total_events == 2
    assert metrics.misplaced_events.labels("ads_click")._value.get() == 1
