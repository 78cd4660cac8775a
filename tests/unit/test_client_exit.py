"""An IngestClient in a process that exits: events are delivered (bounded) or their loss is logged; nothing hangs.

Each test runs a small script in a child interpreter against a fake front-end in this process (a server inside the
child would itself refuse work at interpreter shutdown).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.test_client_sync import FakeIngest, fake_server, hang

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import atexit, sys, threading, time
from service.client import ClientOptions, IngestClient

port, mode = sys.argv[1], sys.argv[2]
opts = ClientOptions(max_latency_s=30.0, rpc_timeout_s=10.0, exit_flush_timeout_s=float(sys.argv[3]))
client = IngestClient(f"127.0.0.1:{port}", options=opts)
if mode == "atexit":
    atexit.register(lambda: print("closed", client.close().accepted, flush=True))

def send():
    for i in range(10):
        client.send("app_log", {"i": i})

if mode == "worker":  # a non-daemon thread that sends and flushes after the main thread returned
    def worker():
        time.sleep(0.3)
        send()
        print("flushed", client.flush(timeout=5).accepted, flush=True)
    threading.Thread(target=worker).start()
else:
    send()
print("main returns", flush=True)
"""


def run_child(tmp_path: Path, port: int, mode: str, exit_timeout_s: float = 5.0) -> tuple[str, str, float]:
    script = tmp_path / "child.py"
    script.write_text(SCRIPT)
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, str(script), str(port), mode, str(exit_timeout_s)], cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=8)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr, time.monotonic() - t0


@pytest.mark.parametrize("mode", ["noclose", "atexit", "worker"])
def test_events_sent_before_exit_are_delivered(tmp_path: Path, mode: str) -> None:
    servicer = FakeIngest()
    with fake_server(servicer) as port:
        out, err, _ = run_child(tmp_path, port, mode)
    assert len(servicer.event_ids) == 10, (out, err)
    if mode == "noclose":
        assert "was not closed before interpreter exit; flushed at exit: 10 accepted" in err
    else:
        assert {"atexit": "closed 10", "worker": "flushed 10"}[mode] in out
        assert "not closed" not in err


def test_exit_flush_is_bounded_and_the_loss_is_logged(tmp_path: Path) -> None:
    servicer = FakeIngest()
    servicer.handler = hang(servicer)
    with fake_server(servicer) as port:
        _out, err, elapsed = run_child(tmp_path, port, "noclose", exit_timeout_s=0.5)
    assert "10 events buffered or in flight were NOT delivered within exit_flush_timeout_s=0.5s" in err
    assert elapsed < 5
