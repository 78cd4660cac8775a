"""``logpipe bench ...``: benchmark sub-commands; ``register`` adds the ``bench`` group to the root app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

bench_app = typer.Typer(help="Benchmarks; results go to bench/results/.", no_args_is_help=True)


@bench_app.command("ingest")
def ingest(
    quick: Annotated[bool, typer.Option("--quick", help="CI-sized run (short scenarios).")] = False,
    pubsub_host: Annotated[
        str | None, typer.Option(help="Use this Pub/Sub emulator instead of starting one via service.local.")
    ] = None,
    seconds: Annotated[float | None, typer.Option(help="Seconds per scenario (default 5, quick 1.5).")] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the JSON report goes.")] = Path("bench/results"),
) -> None:
    """Front-end throughput and ack latency vs a bare grpcio server and direct Pub/Sub publishing."""
    from service.bench.ingest import print_table, run_bench

    print_table(run_bench(pubsub_host, quick, seconds, out_dir))


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    from replicator import bench as replicator_bench
    from replicator import bench_finalize

    replicator_bench.register(bench_app)
    bench_finalize.register(bench_app)
    from service.demo.commands import register_bench

    register_bench(bench_app)
    app.add_typer(bench_app, name="bench")
