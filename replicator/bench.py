"""``logpipe bench replicate``: landing throughput of one worker from a pre-filled backlog, against a bare
pull-and-ack loop on the same emulator, with the worker's RSS sampled over time; then finalization throughput.

Setup: the Pub/Sub emulator and fake-gcs-server (memory backend) started for the run; the catalog's ``bulk`` tier
under a bench-only prefix; ``app_log`` events of ~1 KiB (poorly compressible payloads), 1000 per envelope (~1 MiB
uncompressed), all in one hour. The worker is a real ``logpipe replicate --no-finalize`` child process; finalization
is a real ``logpipe finalize --before now`` child. Before anything is measured, ``warmup_envelopes`` are drained on a
scratch subscription so the emulator's JIT start-up is not charged to one phase; each measured phase reports its CPU
milliseconds per message by process (``cpu_ms_per_message``). Results: a rich table and
bench/results/replicate-<ts>.json.

Where to look: this module is the command (``register``) and its sizing (``baseline_count``); the measured run is
``replicator.bench_run.run_bench``; the table, the targets' verdicts and the stand-ins' ceiling are
``replicator.bench_report``; the emulators, the backlog, the bare loops and the CPU and RSS meters are
``replicator.bench_backlog``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from replicator.bench_report import print_table
from replicator.bench_run import run_bench


def baseline_count(events: int, events_per_envelope: int, requested: int | None) -> int:
    """Messages each bare loop moves: ``requested`` (>= 1; None = the landing's envelope count), never more than the
    landing's envelope count. Same-length runs keep start-up from weighing more in the baselines than in the landing."""
    landing = max(1, events // events_per_envelope)
    return landing if requested is None else min(requested, landing)


def register(bench_app: typer.Typer) -> None:
    """Add ``replicate`` to the ``logpipe bench`` group."""

    @bench_app.command("replicate")
    def replicate(
        events: Annotated[
            int, typer.Option(help="Events in the backlog (>= 1,000,000 for the RSS claim).")
        ] = 1_000_000,
        quick: Annotated[bool, typer.Option("--quick", help="100k events.")] = False,
        events_per_envelope: Annotated[int, typer.Option(help="Events per envelope.")] = 1000,
        event_bytes: Annotated[int, typer.Option(help="Approximate event size.")] = 1024,
        baseline_envelopes: Annotated[
            int | None,
            typer.Option(
                min=1,
                help="Envelopes for each bare pull-ack loop. Default: as many as the landing's backlog, so the"
                " baselines move the same messages (a 300-envelope baseline measured ~20% lower bytes/s: start-up"
                " is a larger share of a short run).",
            ),
        ] = None,
        warmup_envelopes: Annotated[
            int,
            typer.Option(
                min=0,
                help="Envelopes drained twice (sync, then streaming) on a scratch subscription before anything is"
                " measured, so the Pub/Sub emulator's JIT start-up is not charged to one phase. 0 = no warm-up.",
            ),
        ] = 1000,
        out_dir: Annotated[Path, typer.Option(help="Where the JSON report goes.")] = Path("bench/results"),
    ) -> None:
        """Replicator landing throughput and RSS vs a bare pull-and-ack loop; finalization throughput."""
        n = 100_000 if quick else events
        baseline = baseline_count(n, events_per_envelope, baseline_envelopes)
        print_table(run_bench(n, events_per_envelope, event_bytes, baseline, out_dir, warmup_envelopes))
