"""The committed generated code in service/_gen matches what ``python -m service.protogen`` makes from proto/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from service.protogen import GEN_ROOT, PROTO_ROOT, generate

pytestmark = pytest.mark.unit


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".py", ".pyi")
    }


def _stale(proto_root: Path, committed: Path, out: Path) -> list[str]:
    """Files that differ between a fresh generation from ``proto_root`` and ``committed``."""
    generate(out, proto_root)
    fresh, have = _snapshot(out), _snapshot(committed)
    return sorted(name for name in fresh.keys() | have.keys() if fresh.get(name) != have.get(name))


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    stale = _stale(PROTO_ROOT, GEN_ROOT, tmp_path / "gen")
    assert not stale, f"service/_gen is stale for {stale}; run `python -m service.protogen` and commit"


def test_the_check_notices_an_edited_proto(tmp_path: Path) -> None:
    proto = tmp_path / "proto"
    shutil.copytree(PROTO_ROOT, proto)
    event = proto / "logpipe" / "v1" / "event.proto"
    text = event.read_text()
    event.write_text(text + "\nmessage StaleCheckProbe { string probe = 1; }\n")
    assert any("event_pb2" in name for name in _stale(proto, GEN_ROOT, tmp_path / "gen"))


def test_generated_imports_point_into_service_gen() -> None:
    for path in GEN_ROOT.rglob("*.py"):
        assert "from logpipe." not in path.read_text(), path
