"""The foreground loop of ``logpipe local``: start, report, watch the children, stop on SIGINT/SIGTERM.

Contract: returns an exit code; 0 after a requested stop, 1 when the stack failed to start or a child died.
Every child is stopped before it returns, whatever happened (a SIGKILL of this process is handled by the next
start on the same state directory, see ``launcher.clean_stale``).
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

from rich.console import Console
from rich.table import Table

from service.catalog import CatalogError
from service.local.config import LocalConfig
from service.local.endpoints import Endpoints
from service.local.errors import Cancelled, LocalCloudError
from service.local.launcher import LocalCloud


def summary(endpoints: Endpoints, notes: tuple[str, ...], elapsed_s: float, timings: dict[str, float]) -> Table:
    """A short human summary of a ready stack."""
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    title = f"logpipe local: ready in {elapsed_s:.1f} s ({phases})"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("project", endpoints.project),
        ("pubsub", endpoints.pubsub_host),
        ("gcs", endpoints.gcs_url),
        ("bigquery", f"{endpoints.bigquery_url} (gRPC {endpoints.bigquery_grpc})"),
        ("bucket", endpoints.bucket),
        ("dataset", endpoints.dataset),
        ("ingest", ", ".join(endpoints.ingest_targets) or "-"),
        ("processes", ", ".join(f"{p.name}={p.pid}" for p in endpoints.processes)),
        ("state", endpoints.state_dir),
    ]
    for key, value in rows:
        table.add_row(key, value)
    for note in notes:
        table.add_row("note", note)
    return table


def run_foreground(config: LocalConfig, console: Console | None = None) -> int:
    """Run the stack until SIGINT/SIGTERM or until a child dies. Blocks. Returns the exit code.

    The signal handlers only record the request (nothing is raised from inside them, so no child can be started
    and then forgotten); ``LocalCloud.start`` polls it and the watch loop wakes on it.
    """
    console = console or Console(stderr=True)
    requested: list[str] = []
    wake = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        requested.append(signal.Signals(signum).name)
        wake.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    cloud = LocalCloud(config, cancelled=wake.is_set)
    started = time.monotonic()
    try:
        try:
            endpoints = cloud.start()
        except Cancelled:
            console.print(f"{requested[0]}: stopped before the stack was ready")
            return 0
        except (LocalCloudError, CatalogError) as exc:
            console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
            return 1
        console.print(summary(endpoints, cloud.notes, time.monotonic() - started, cloud.timings))
        console.print(f'Use it from a shell: eval "$(logpipe env --state-dir {config.state_dir})". Ctrl-C stops it.')
        while not wake.wait(0.5):
            dead = cloud.dead_children()
            if dead:
                for name, code, log in dead:
                    console.print(f"[red]error:[/red] {name} exited with code {code} (log: {log}); stopping")
                return 1
        console.print(f"{requested[0]}: stopping")
        return 0
    finally:
        cloud.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
