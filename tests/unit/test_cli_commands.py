"""Every command the README and the Makefile name is registered in the `logpipe` CLI."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from service.catalog import load_catalog
from service.cli import app

pytestmark = pytest.mark.unit

ROOT = {"local", "env", "categories", "demo", "smoke", "serve", "send", "replicate", "finalize", "partitions",
        "load", "query", "bench"}  # fmt: skip
BENCH = {"ingest", "replicate", "e2e", "soak"}


def _listed(args: list[str]) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", sorted(ROOT))
def test_root_command_is_registered(name: str) -> None:
    assert f" {name} " in _listed([])


@pytest.mark.parametrize("name", sorted(BENCH))
def test_bench_command_is_registered(name: str) -> None:
    assert f" {name} " in _listed(["bench"])


def test_logpipe_turns_off_the_storage_librarys_metadata_threads_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.cli import GCS_BUCKET_METADATA_SWITCH

    monkeypatch.delenv(GCS_BUCKET_METADATA_SWITCH, raising=False)
    assert CliRunner().invoke(app, ["partitions", "--help"]).exit_code == 0
    assert os.environ[GCS_BUCKET_METADATA_SWITCH] == "true"
    monkeypatch.setenv(GCS_BUCKET_METADATA_SWITCH, "false")  # an operator's explicit choice is kept
    assert CliRunner().invoke(app, ["partitions", "--help"]).exit_code == 0
    assert os.environ[GCS_BUCKET_METADATA_SWITCH] == "false"


# --- the replicator commands' CLI contract: usage errors exit 2 with one clear line, store failures exit 1 --------

_UNSET = {"LOGPIPE_BUCKET": None, "LOGPIPE_CATALOG": None, "LOGPIPE_CRASH_AT": None, "LOGPIPE_LOG_FORMAT": None}
_UNREACHABLE_GCS = {**_UNSET, "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1"}


def _run(args: list[str], env: dict[str, str | None]) -> Any:
    return CliRunner().invoke(app, args, env=env, terminal_width=300)


def _one_error_line(text: str) -> str:
    assert "Traceback" not in text and "validation error" not in text, text
    [line] = [ln for ln in text.strip().splitlines() if ln.strip()]
    return line


@pytest.mark.parametrize("before", ["garbage", "2026-11-26 14h", "yesterday"])
def test_finalize_refuses_an_unparseable_before_as_a_usage_error(before: str) -> None:
    result = _run(["finalize", "--before", before, "--bucket", "bkt"], _UNREACHABLE_GCS)
    assert result.exit_code == 2, result.output
    assert "'--before'" in result.output and "RFC 3339" in result.output and "now" in result.output
    assert "Traceback" not in result.output


def test_finalize_refuses_a_before_without_an_offset() -> None:
    result = _run(["finalize", "--before", "2026-11-26T14:00:00", "--bucket", "bkt"], _UNREACHABLE_GCS)
    assert result.exit_code == 2 and "no UTC offset" in result.output


def test_before_accepts_rfc3339_with_an_offset_or_z_in_either_case() -> None:
    from replicator.commands.finalize import _parse_before

    utc14 = dt.datetime(2026, 11, 26, 14, tzinfo=dt.UTC)
    for text in ("2026-11-26T14:00:00Z", "2026-11-26t14:00:00z", "2026-11-26T15:00:00+01:00", " 2026-11-26T14:00Z "):
        assert _parse_before(text) == utc14, text
    assert _parse_before("NOW").tzinfo is not None


@pytest.mark.parametrize("command", [["finalize", "--before", "now"], ["partitions"]])
def test_a_missing_bucket_is_a_one_line_usage_error(command: list[str]) -> None:
    result = _run(command, _UNREACHABLE_GCS)
    assert result.exit_code == 2
    assert "missing --bucket (env LOGPIPE_BUCKET)" in result.output and "pydantic" not in result.output


def test_a_bad_config_value_names_its_flag_and_the_problem() -> None:
    result = _run(["partitions", "--bucket", "ab"], _UNREACHABLE_GCS)
    assert result.exit_code == 2
    assert "--bucket (env LOGPIPE_BUCKET): String should have at least 3 characters (got 'ab')" in result.output


@pytest.mark.parametrize("command", [["finalize", "--before", "now"], ["partitions"]])
def test_an_unknown_category_is_refused_with_a_hint(command: list[str]) -> None:
    result = _run([*command, "--bucket", "bkt", "--category", "ads_clik"], _UNREACHABLE_GCS)
    assert result.exit_code == 2
    assert "unknown category 'ads_clik'" in result.output and "did you mean 'ads_click'?" in result.output
    assert "app_log" in result.output  # the known ones are listed


@pytest.fixture
def forbidding_gcs() -> Iterator[str]:
    """A GCS endpoint that answers 403 to everything (a bucket the caller may not read)."""

    class Forbidden(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"error": {"code": 403, "message": "caller does not have storage.objects.list"}})
            self.send_response(403)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forbidden)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("command", [["finalize", "--before", "now"], ["partitions"]])
def test_a_forbidden_bucket_is_one_line_and_exit_1(command: list[str], forbidding_gcs: str) -> None:
    result = _run([*command, "--bucket", "bkt"], {**_UNSET, "STORAGE_EMULATOR_HOST": forbidding_gcs})
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.output)
    assert "landing bucket bkt" in line and "Forbidden" in line and "storage.objects.list" in line


@pytest.mark.parametrize("command", [["finalize", "--before", "2026-11-26t14:00:00z"], ["partitions"]])
def test_an_unreachable_store_gives_up_after_the_gcs_deadline_with_one_line(command: list[str]) -> None:
    result = _run([*command, "--bucket", "bkt", "--gcs-deadline", "0.3"], _UNREACHABLE_GCS)
    assert result.exit_code == 1, result.output
    assert "gave up after 0.3s" in _one_error_line(result.output)


_FAILING_START = """
import sys
from google.api_core import exceptions as gexc
from replicator import clients, worker
from service.cli import app

real_object_store = clients.object_store

def object_store(cfg, on_retry=None, *, tiers=None):
    print("pool tiers", ",".join(tiers or ()), flush=True)
    return real_object_store(cfg, on_retry, tiers=tiers)

def start(self):
    raise {error}("projects/p/subscriptions/logpipe-core-replicator\\nnot there")

clients.object_store = object_store
worker.Worker.start = start
app(["replicate", "--threads", "2"])
"""


def _replicate_env(**extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GOOGLE_CLOUD_PROJECT": "p", "LOGPIPE_BUCKET": "bkt",
           "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1", "PUBSUB_EMULATOR_HOST": "127.0.0.1:1"}  # fmt: skip
    return {**env, **extra}


def _error_lines(stderr: str) -> list[str]:
    """The ERROR lines of a ``replicate`` run (INFO lines such as "replicator stopped" may follow)."""
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if " ERROR " in ln]


@pytest.mark.parametrize("error", ["gexc.NotFound", "gexc.PermissionDenied"])
def test_replicate_that_cannot_start_prints_one_line_and_exits_1(error: str) -> None:
    code = _FAILING_START.format(error=error)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_replicate_env(), timeout=60)
    assert out.returncode == 1, out.stderr
    [line] = _error_lines(out.stderr)
    assert "replicator failed to start" in line and error.split(".")[1] in line and "not there" in line
    # no --tier: the connection pools are sized for every tier of the catalog, not for none
    assert out.stdout.strip() == "pool tiers " + ",".join(t.name for t in load_catalog().tiers)


def test_replicate_with_its_metrics_port_in_use_prints_one_line_and_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "service.cli", "replicate", "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            env=_replicate_env(),
            timeout=60,
        )
    assert out.returncode == 1
    [line] = _error_lines(out.stderr)
    assert "replicator failed to start: OSError" in line and "Address already in use" in line


# --- the finalizer's hot window: `replicate` checks it, `finalize` always lists everything -------------------------


def test_replicate_refuses_a_hot_window_that_cannot_hold_the_closing_hours() -> None:
    result = _run(["replicate", "--finalize-hot-hours", "1", "--bucket", "bkt", "--project", "p"], _UNREACHABLE_GCS)
    assert result.exit_code == 2, result.output
    assert "--finalize-hot-hours must exceed the lateness + 1 h (1.16667 h; got 1)" in result.output
    assert "validation error" not in result.output


def test_finalize_with_a_long_lateness_is_not_refused_for_the_workers_hot_window() -> None:
    result = _run(["finalize", "--lateness-seconds", "36000", "--bucket", "bkt", "--gcs-deadline", "0.3"],
                  _UNREACHABLE_GCS)  # fmt: skip
    assert result.exit_code == 1, result.output  # it got as far as the (unreachable) bucket
    assert "gave up after 0.3s" in _one_error_line(result.output)


def test_finalize_lists_every_staging_object_and_commits_old_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    """``logpipe finalize`` is the operator's full scan: hours 10 days old, in every category, whatever the worker's
    hot window (each category is a separate ``run_pass`` of one ``Finalizer``: none may list only the window)."""
    from replicator import clients
    from replicator.landing import Lander
    from replicator.metrics import Metrics
    from replicator.store import MemoryStore
    from replicator.synth import make_envelope

    listed: list[str] = []

    class Store(MemoryStore):
        def list(self, prefix: str, *, start_offset: str = "") -> Any:
            listed.append(prefix)
            return super().list(prefix, start_offset=start_offset)

    store = Store()
    old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=10)).replace(minute=0, second=0, microsecond=0)
    lander = Lander(store, ["ads_click", "app_log"], Metrics())
    for category in ("ads_click", "app_log"):
        env = make_envelope(category, [f"{category}-1", f"{category}-2"], old + dt.timedelta(minutes=5))
        lander.land(env.data, env.attributes)
    monkeypatch.setattr(clients, "object_store", lambda cfg, *a, **k: store)
    result = _run(["finalize", "--bucket", "bkt", "--category", "ads_click", "--category", "app_log"], _UNSET)
    assert result.exit_code == 0, result.output
    label = f"{old:%Y-%m-%dT%H}"
    assert [ln.split()[:3] for ln in result.output.splitlines() if ln.startswith("committed ")] == [
        ["committed", "ads_click", label],
        ["committed", "app_log", label],
    ]
    assert "staging/ads_click/" in listed and "staging/app_log/" in listed
