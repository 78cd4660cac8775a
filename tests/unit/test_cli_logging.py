"""Log formats of the replicator's and loader's commands: text for people, JSON with ``severity`` for Cloud Logging."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from service.frontend.logs import JsonFormatter, configure_cli

pytestmark = pytest.mark.unit


def test_json_lines_carry_the_severity_cloud_logging_reads() -> None:
    record = logging.LogRecord("replicator", logging.ERROR, __file__, 1, "finalizer pass failed: %s", ("boom",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["severity"] == "ERROR" and line["level"] == "ERROR"
    assert line["msg"] == "finalizer pass failed: boom"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="LOGPIPE_LOG_FORMAT must be one of text, json"):
        configure_cli("INFO", "yaml")


@pytest.mark.parametrize(("fmt", "json_lines"), [("json", True), ("text", False)])
def test_a_fresh_process_logs_in_the_chosen_format(fmt: str, json_lines: bool) -> None:
    code = (
        "import logging; from service.frontend.logs import configure_cli; "
        f"configure_cli('INFO', {fmt!r}); logging.getLogger('replicator').warning('lease lost')"
    )
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr.strip()
    if json_lines:
        assert json.loads(err)["severity"] == "WARNING"
    else:
        assert err.endswith("WARNING replicator: lease lost") and not err.startswith("{")


@pytest.mark.parametrize(
    "command", [["finalize", "--before", "now"], ["load", "--once", "--bucket", "b", "--project", "p"]]
)
def test_the_commands_refuse_an_unknown_log_format(command: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", *command],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LOGPIPE_LOG_FORMAT": "yaml"},
    )
    assert out.returncode == 2
    assert "LOGPIPE_LOG_FORMAT must be one of text, json" in out.stderr
