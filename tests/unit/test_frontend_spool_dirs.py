"""Durability across a host crash: ``Spool.open`` fsyncs the parent of every directory it creates, so the first acked
envelope's whole directory chain is on disk, not only the file and the spool directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.envelope import EncodedEnvelope
from service.frontend import spool as spool_module
from service.frontend.spool import Spool

pytestmark = pytest.mark.unit


def test_a_new_spool_directory_is_itself_durable_before_the_first_ack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh front-end (spool dir ``<state_dir>/spool/frontend-<port>``, created now) meets a Pub/Sub outage; the
    first envelope is written, fsync'd, renamed, the spool directory fsync'd, the client acked; if the host lost power
    before the parent's metadata was written back, ``frontend-<port>`` and every envelope in it could be gone."""
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(spool_module.os, "fsync", fsync)
    state = tmp_path / "state"
    s = Spool(state / "spool" / "frontend-50051", 1 << 20)
    s.open()
    s.write(EncodedEnvelope("e1", "app_log", b"data", {"envelope_id": "e1"}, 1))
    s.close()
    assert str(state / "spool") in synced, f"fsync'd only {synced}"
