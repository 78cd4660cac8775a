"""``logpipe send``: JSON lines in, counts out, non-zero exit on rejections, line numbers for malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from service.cli import app
from tests.unit.frontend_support import published_event_ids, running_frontend

pytestmark = pytest.mark.unit


def lines(*objs: object) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs)


def test_all_accepted_exit_zero(tmp_path: Path) -> None:
    f = tmp_path / "in.jsonl"
    eid = "01a2181d-2e93-7000-8109-a0979a621dea"
    f.write_text(lines({"payload": {"a": 1}}, "", {"payload": "[1,2]", "event_id": eid, "attributes": {"k": "v"},
                                                  "event_time": "2026-11-26T12:00:00Z"}))  # fmt: skip
    with running_frontend(tmp_path) as (fe, _stub, pub):
        res = CliRunner().invoke(app, ["send", "--target", f"127.0.0.1:{fe.port}", "--category", "app_log", str(f)])
        assert res.exit_code == 0, res.output
        assert "accepted 2 rejected 0" in res.stdout
        assert eid in published_event_ids(pub)


def test_rejections_exit_one_with_reasons(tmp_path: Path) -> None:
    with running_frontend(tmp_path) as (fe, _stub, _pub):
        res = CliRunner().invoke(
            app,
            ["send", "--category", "app_log", "-"],
            input=lines({"payload": "not json"}, {"payload": {"ok": True}}),
            env={"LOGPIPE_INGEST_TARGET": f"127.0.0.1:{fe.port}"},
        )
        assert res.exit_code == 1
        assert "accepted 1 rejected 1" in res.stdout
        assert "INVALID_JSON" in res.stderr


@pytest.mark.parametrize(
    ("bad", "why"),
    [("{not json", "not JSON"), ('{"nopayload": 1}', "payload"), ('{"payload": 1, "event_time": "yesterday"}', "RFC"),
     ('{"payload": 1, "attributes": {"a": 1}}', "attributes"), ('{"payload": 1, "extra": 1}', "unknown keys")],
)  # fmt: skip
def test_malformed_line_is_reported_with_its_number(tmp_path: Path, bad: str, why: str) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(lines({"payload": 1}, bad))
    res = CliRunner().invoke(app, ["send", "--target", "127.0.0.1:1", "--category", "app_log", str(f)])
    assert res.exit_code == 2
    assert "line 2" in res.stderr and why in res.stderr


def test_no_target_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["send", "--category", "app_log", "-"], input="", env={"LOGPIPE_INGEST_TARGET": ""})
    assert res.exit_code == 2


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["send", "--target", "127.0.0.1:1", "--category", "app_log", str(tmp_path / "no")])
    assert res.exit_code == 2
    assert "cannot read" in res.stderr and "No such file" in res.stderr
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_missing_ca_cert_is_a_clear_error(tmp_path: Path) -> None:
    args = ["send", "--target", "127.0.0.1:1", "--category", "app_log", "--ca-cert", str(tmp_path / "no.pem"), "-"]
    res = CliRunner().invoke(app, args, input=lines({"payload": 1}))
    assert res.exit_code == 2
    assert "--ca-cert" in res.stderr and "No such file" in res.stderr


def test_empty_target_list_is_a_clear_error() -> None:
    res = CliRunner().invoke(app, ["send", "--target", ",", "--category", "app_log", "-"], input=lines({"payload": 1}))
    assert res.exit_code == 2
    assert "--target" in res.stderr and "host:port" in res.stderr


def test_non_string_producer_is_refused_and_documented() -> None:
    res = CliRunner().invoke(
        app,
        ["send", "--target", "127.0.0.1:1", "--category", "app_log", "-"],
        input=lines({"payload": 1, "producer": 5}),
    )
    assert res.exit_code == 2
    assert "line 1" in res.stderr and "producer must be a string" in res.stderr
    assert '"producer"' in CliRunner().invoke(app, ["send", "--help"]).stdout
