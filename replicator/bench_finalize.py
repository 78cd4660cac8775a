"""``logpipe bench finalize``: how fast N replicator workers finalize a set of closed partitions, with finalization
claims (the default) against the same workers without them (``--finalize-claim-seconds 0``), and with claims and
every partition finalized in ``shards`` shards (the category's ``finalize_shards``), in the same run.

Setup: the Pub/Sub emulator and fake-gcs-server (memory backend) started for the run; the catalog's ``bulk`` tier
under a bench-only prefix; ``partitions`` hours of ``app_log``, each with ``events_per_partition`` events of ~1 KiB
(poorly compressible payloads) landed straight into staging (``replicator.landing.Lander``, as a worker lands them).
Each phase starts ``workers`` real ``logpipe replicate --tier bulk`` children on an empty subscription, waits until
every partition is complete (``_SUCCESS``, nothing pending), and reports the wall time, the events committed per
second, the workers' CPU, and the partition merges done twice (a worker that lost the commit race, or found its
peer's identical manifest: the same inputs give the same files). Between the phases the committed objects are
deleted, so all merge the same staging objects. Results: a table and bench/results/finalize-<ts>.json. The
no-claims phase is the baseline: the protocol without coordination. Claims spread partitions over the workers;
shards spread the events of one partition, which is what ``--partitions 1`` measures (one hot category's hour).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from replicator.bench_report import write_report

#: (name, --finalize-claim-seconds, shards: None for 1, else the ``--shards`` option)
PHASES = (("no_claims", "0", False), ("claims", "180", False), ("shards", "180", True))


def _land(store: Any, catalog: Any, hours: list[dt.datetime], events: int, per_envelope: int, size: int) -> int:
    """Land ``events`` events of ``size`` bytes into each hour's staging partition; returns the staging objects."""
    from replicator.bench_backlog import envelopes
    from replicator.landing import Lander
    from replicator.metrics import Metrics

    lander = Lander(store, [catalog.category("app_log")], Metrics())
    n = 0
    for seed, hour in enumerate(hours, start=1):
        for e in envelopes(max(1, events // per_envelope), per_envelope, size, hour, seed=seed):
            lander.land(e.data, e.attributes)
            n += 1
    return n


def _committed(store: Any, hours: list[dt.datetime]) -> int:
    """Events committed in the partitions of ``hours``, once every one is complete; -1 until then."""
    from replicator.layout import Layout, Partition
    from replicator.scan import read_partition

    layout, total = Layout(), 0
    for h in hours:
        p = Partition("app_log", h)
        if store.stat(layout.success_marker(p)) is None:
            return -1
        state = read_partition(store, p, layout)
        if state.state != "complete":
            return -1
        total += state.committed_events
    return total


def _with_shards(cat_path: Path, shards: int, work: Path) -> Path:
    """A copy of the catalog at ``cat_path`` whose ``app_log`` is finalized in ``shards`` shards."""
    import yaml

    data = yaml.safe_load(cat_path.read_text())
    for c in data["categories"]:
        if c["name"] == "app_log":
            c["finalize_shards"] = shards
    out = work / f"catalog-{shards}-shards.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


def _phase(env: dict[str, str], work: Path, store: Any, hours: list[dt.datetime], workers: int, claim: str) -> Any:
    from replicator.bench_backlog import tree_cpu_seconds
    from replicator.bench_run import REPO

    args = ["--tier", "bulk", "--finalize-interval", "1", "--lateness-seconds", "0", "--receive-window", "0"]
    procs, logs = [], []
    for i in range(workers):
        logs.append(work / f"finalize-{claim}-{i}.log")
        with open(logs[-1], "wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "service.cli", "replicate", *args, "--finalize-claim-seconds", claim],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                    start_new_session=True,
                )
            )
    start = time.monotonic()
    try:
        while (events := _committed(store, hours)) < 0:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker exited: {logs[0].read_text()[-2000:]}")
            time.sleep(0.2)
        seconds = time.monotonic() - start
        per_worker = [tree_cpu_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
    text = "".join(log.read_text() for log in logs)
    return {
        "seconds": seconds,
        "events": events,
        "events_per_s": events / seconds,
        "worker_cpu_seconds": sum(per_worker),
        # The busiest worker's CPU: the work on one worker's critical path, whatever the cores it shares.
        "worker_cpu_max_seconds": max(per_worker),
        "lost_races": text.count("lost the commit race"),
        # The same inputs give the same TOKEN and files: a second merge of a partition ends at an identical manifest.
        "merged_twice": text.count("lost the commit race") + text.count("already commits these files"),
        "claims_taken_over": text.count("took over"),
        "shard_manifests": sum(1 for i in store.list("logs/") if "/_manifest-s" in i.name),
    }


def run_bench(
    partitions: int, events: int, per_envelope: int, size: int, workers: int, out_dir: Path, shards: int = 2
) -> Any:
    """The three phases (no claims, claims, claims and ``shards`` shards) on the same landed partitions; writes and
    returns the report."""
    from replicator.bench_backlog import emulators
    from replicator.bench_run import _child_env, _provision
    from replicator.clients import object_store
    from replicator.config import ReplicatorConfig

    top = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    hours = [top - dt.timedelta(hours=i) for i in range(partitions)]
    report: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(),
        "partitions": partitions,
        "events_per_partition": events,
        "events_per_envelope": per_envelope,
        "event_bytes": size,
        "workers": workers,
        "shards_per_partition": shards,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-finalize-") as tmp, emulators(Path(tmp)) as emu:
        work = Path(tmp)
        catalog, cat_path, bucket = _provision(emu, work)
        env = _child_env(emu, cat_path, bucket)
        os.environ["STORAGE_EMULATOR_HOST"] = emu.gcs_url
        store = object_store(ReplicatorConfig(project=env["GOOGLE_CLOUD_PROJECT"], bucket=bucket))
        t = time.monotonic()
        report["staging_objects"] = _land(store, catalog, hours, events, per_envelope, size)
        report["land_seconds"] = time.monotonic() - t
        for name, claim, sharded in PHASES:
            for prefix in ("logs/", "claims/", "workers/"):
                for info in list(store.list(prefix)):
                    store.delete(info.name)
            phase_env = {**env, "LOGPIPE_CATALOG": str(_with_shards(cat_path, shards, work))} if sharded else env
            report[name] = _phase(phase_env, work, store, hours, workers, claim)
    report["claims_vs_no_claims"] = report["claims"]["events_per_s"] / report["no_claims"]["events_per_s"]
    report["shards_vs_claims"] = report["shards"]["events_per_s"] / report["claims"]["events_per_s"]
    return write_report(report, out_dir, "finalize")


def print_table(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"logpipe bench finalize: {report['workers']} workers, {report['partitions']} partitions of "
        f"{report['events_per_partition']:,} events"
    )
    for col in ("phase", "seconds", "events/s", "worker CPU s", "busiest worker CPU s", "merged twice"):
        t.add_column(col, justify="right")
    for name, _, sharded in PHASES:
        r = report[name]
        label = f"claims, {report['shards_per_partition']} shards" if sharded else name
        t.add_row(
            label, f"{r['seconds']:.1f}", f"{r['events_per_s']:,.0f}", f"{r['worker_cpu_seconds']:.1f}",
            f"{r['worker_cpu_max_seconds']:.1f}", str(r["merged_twice"]),
        )  # fmt: skip
    console = Console()
    console.print(t)
    console.print(
        f"claims / no claims (events/s): {report['claims_vs_no_claims']:.2f}x   "
        f"{report['shards_per_partition']} shards / claims: {report['shards_vs_claims']:.2f}x   -> {report['path']}"
    )


def register(bench_app: typer.Typer) -> None:
    """Add ``finalize`` to the ``logpipe bench`` group."""

    @bench_app.command("finalize")
    def finalize(
        partitions: Annotated[int, typer.Option(min=1, help="Closed hours to finalize.")] = 4,
        events_per_partition: Annotated[int, typer.Option(min=1, help="Events landed in each hour.")] = 250_000,
        quick: Annotated[bool, typer.Option("--quick", help="25k events per partition.")] = False,
        events_per_envelope: Annotated[int, typer.Option(min=1, help="Events per envelope.")] = 1000,
        event_bytes: Annotated[int, typer.Option(min=1, help="Approximate event size.")] = 1024,
        workers: Annotated[int, typer.Option(min=1, help="`logpipe replicate` workers per phase.")] = 2,
        shards: Annotated[
            int, typer.Option(min=1, max=64, help="Shards per partition in the last phase (finalize_shards).")
        ] = 2,
        out_dir: Annotated[Path, typer.Option(help="Where the JSON report goes.")] = Path("bench/results"),
    ) -> None:
        """Finalization throughput of N workers with claims, against the same workers without (each merges every
        partition, and all but one lose each commit race), and with claims and each partition in --shards shards
        (several workers merge one partition; try --partitions 1)."""
        n = 25_000 if quick else events_per_partition
        print_table(run_bench(partitions, n, events_per_envelope, event_bytes, workers, out_dir, shards))
