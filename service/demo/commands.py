"""CLI for the end-to-end tooling: ``logpipe demo``, ``logpipe bench e2e`` and ``logpipe bench soak``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

RESULTS = Path("bench/results")
T = TypeVar("T")


def _stoppable(name: str, run: Callable[[], T]) -> T:
    """``run()`` under ``stop_children_on_signals``: SIGTERM/SIGINT stop every process it started, then exit 128+N."""
    import os
    import sys

    from service.demo.interrupt import Interrupted, stop_children_on_signals

    try:
        with stop_children_on_signals():
            return run()
    except Interrupted as exc:
        typer.echo(f"{name}: {exc}; every process it started is stopped", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        # Every child is gone, but worker threads (provisioning, client retries) may still be retrying calls to the
        # stopped emulators for minutes, and a normal exit waits for them.
        os._exit(128 + exc.signum)


def demo(
    events: Annotated[int, typer.Option(min=1, help="Valid events to send (plus late and invalid ones).")] = 20_000,
    seed: Annotated[int, typer.Option(help="Workload seed; the same seed sends the same events.")] = 7,
    state_dir: Annotated[
        Path | None, typer.Option(help="Keep the stack's state here (default: a temporary directory).")
    ] = None,
) -> None:
    """Run the whole pipeline on the local cloud and reconcile acked = landed = queried.

    Starts the emulators, 2 front-ends, 2 replicators and a BigQuery loader; sends a seeded workload through the SDK
    (JSON categories, late events after a commit, invalid events); waits until BigQuery shows every acked event;
    finalizes; prints what landed and a verdict. Exits 0 only if every acked event appears exactly once in GCS and
    in BigQuery. Leaves no process behind, also when stopped by SIGTERM or Ctrl-C (exit 143 or 130).
    """
    from rich.console import Console

    from service.demo.demo import run
    from service.local.errors import LocalCloudError

    try:
        ok = _stoppable("demo", lambda: run(state_dir, events, seed, Console()))
    except LocalCloudError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(0 if ok else 1)


OldOut = Annotated[Path | None, typer.Option("--out", hidden=True, help="Old name of --out-dir.")]


def bench_e2e(
    rate: Annotated[float, typer.Option(help="Steady-phase rate, events/s.")] = 5000.0,
    duration: Annotated[float, typer.Option(help="Steady-phase seconds.")] = 60.0,
    burst: Annotated[int, typer.Option(help="Events in the as-fast-as-possible phase.")] = 100_000,
    loader_interval: Annotated[float, typer.Option(help="Seconds between BigQuery loader passes.")] = 30.0,
    out_dir: Annotated[Path, typer.Option(help="Where to write JSON and PNG results.")] = RESULTS,
    out: OldOut = None,
) -> None:
    """Throughput and freshness (ack -> queryable in BigQuery) of the whole local pipeline; JSON + PNG plot."""
    from rich.console import Console

    from service.demo.bench_e2e import run

    _stoppable("bench e2e", lambda: run(rate, duration, burst, out or out_dir, Console(), loader_interval))


def bench_soak(
    minutes: Annotated[float, typer.Option(help="How long to run.")] = 10.0,
    rate: Annotated[
        float | None, typer.Option(help="Events/s (default: 50% of the latest `bench e2e` capacity).")
    ] = None,
    out_dir: Annotated[Path, typer.Option(help="Where to write JSON and PNG results.")] = RESULTS,
    out: OldOut = None,
) -> None:
    """Soak at a fraction of capacity; RSS, open files and threads of every process must stay flat."""
    from rich.console import Console

    from service.demo.soak import run

    ok = _stoppable("bench soak", lambda: run(minutes, rate, out or out_dir, Console()))
    raise typer.Exit(0 if ok else 1)


def register_bench(bench: typer.Typer) -> None:
    """Add ``e2e`` and ``soak`` to the ``bench`` group."""
    bench.command("e2e")(bench_e2e)
    bench.command("soak")(bench_soak)
