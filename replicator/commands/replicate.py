"""``logpipe replicate``: the long-running worker. Lands envelopes from Pub/Sub into GCS staging, exactly once, and
runs the finalizer loop (``replicator.worker.Worker``).

Exit codes: 2 on a usage error; 1 when it cannot start (no subscription, no permission, no credentials, metrics port
in use: one line) or when streaming pull fails for good. It ends with ``os._exit`` after ``Worker.stop``, so abandoned
callbacks (an upload still retrying) do not hold the process; their messages are unacked and will be redelivered.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Annotated

import typer

from replicator.commands._common import _catalog, _config, _one_line, setup_logging

_log = logging.getLogger("replicator")


def replicate(
    ctx: typer.Context,
    tier: Annotated[
        list[str] | None, typer.Option("--tier", help="Tier to replicate (repeatable); default: every tier.")
    ] = None,
    bucket: Annotated[str | None, typer.Option(help="Landing bucket (env LOGPIPE_BUCKET).")] = None,
    catalog: Annotated[str | None, typer.Option(help="Catalog YAML (env LOGPIPE_CATALOG).")] = None,
    project: Annotated[str | None, typer.Option(help="Project (env GOOGLE_CLOUD_PROJECT).")] = None,
    lateness_seconds: Annotated[
        float | None, typer.Option(help="Allowed lateness before a partition closes (default 600).")
    ] = None,
    receive_window: Annotated[
        float | None,
        typer.Option(
            help="Seconds the watermark remembers the publish times of started messages, so a draining backlog or "
            "a nacked message keeps its hour open; also how long a just-started worker that has received nothing "
            "waits before closing any hour (default 120; 0 = only messages held now, no wait)."
        ),
    ] = None,
    finalize_interval: Annotated[
        float | None, typer.Option(help="Seconds between finalizer passes (default 30).")
    ] = None,
    finalize_hot_hours: Annotated[
        float | None,
        typer.Option(
            help="Finalizer passes list only the staging days of the last N hours; must exceed the lateness + 1 h "
            "(default 6)."
        ),
    ] = None,
    finalize_full_scan_seconds: Annotated[
        float | None,
        typer.Option(
            help="Seconds between finalizer passes that list every staging object, for late data into older hours; "
            "the first pass always does (default 3600)."
        ),
    ] = None,
    finalize_claim_seconds: Annotated[
        float | None,
        typer.Option(
            help="A worker finalizes a partition under a claim that expires this many seconds after its last "
            "renewal, and skips partitions that other live workers claim; after a worker dies, its partitions wait "
            "this long (default 180; 0 = no claims: every worker works on every closable partition)."
        ),
    ] = None,
    finalize: Annotated[
        bool, typer.Option("--finalize/--no-finalize", help="Run the finalizer loop in this worker.")
    ] = True,
    max_messages: Annotated[int | None, typer.Option(help="Flow control: messages held at once (default 64).")] = None,
    max_bytes: Annotated[
        int | None, typer.Option(help="Flow control: bytes held at once (default 256 MiB, >= 10 MiB).")
    ] = None,
    max_lease_seconds: Annotated[
        float | None, typer.Option(help="Longest lease extension of one message (default 600).")
    ] = None,
    lease_extension_seconds: Annotated[
        int | None, typer.Option(help="Length of each lease extension; bounds redelivery after a crash (default 60).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Landing threads per tier (default 8).")] = None,
    target_file_bytes: Annotated[
        int | None, typer.Option(help="Approximate size of a finalized data file (default 128 MiB).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT (0 = off).")
    ] = None,
    drain_timeout: Annotated[
        float | None, typer.Option(help="Seconds to finish in-flight work on SIGTERM (default 20).")
    ] = None,
    nack_delay: Annotated[
        float | None, typer.Option(help="Pause before nacking after a permanent GCS error (default 10).")
    ] = None,
    gcs_deadline: Annotated[
        float | None, typer.Option(help="Total seconds to retry one transient GCS failure (default 60).")
    ] = None,
) -> None:
    """Land envelopes from Pub/Sub into GCS staging, exactly once, and finalize closed partitions."""
    setup_logging()
    flags = {
        "tiers": tuple(tier or ()) or None,
        "bucket": bucket,
        "catalog_path": catalog,
        "project": project,
        "lateness_seconds": lateness_seconds,
        "receive_window_seconds": receive_window,
        "finalize_interval": finalize_interval,
        "finalize_hot_hours": finalize_hot_hours,
        "finalize_full_scan_seconds": finalize_full_scan_seconds,
        "finalize_claim_seconds": finalize_claim_seconds,
        "finalize": finalize,
        "max_messages": max_messages,
        "max_bytes": max_bytes,
        "max_lease_seconds": max_lease_seconds,
        "lease_extension_seconds": lease_extension_seconds,
        "threads": threads,
        "target_file_bytes": target_file_bytes,
        "metrics_port": metrics_port,
        "drain_timeout": drain_timeout,
        "gcs_deadline": gcs_deadline,
        "nack_delay": nack_delay,
    }
    cfg = _config(ctx, flags)
    cat = _catalog(cfg.catalog_path)
    tiers = cfg.tiers or tuple(t.name for t in cat.tiers)
    unknown = [t for t in tiers if t not in {x.name for x in cat.tiers}]
    if unknown:
        typer.echo(f"unknown tiers {unknown}", err=True)
        raise typer.Exit(2)

    from replicator import clients
    from replicator.crash import CrashPoints
    from replicator.metrics import Metrics
    from replicator.worker import Worker

    metrics = Metrics()
    worker: Worker | None = None
    code = 0
    try:
        try:
            metrics.serve(cfg.metrics_port)
            worker = Worker(
                catalog=cat,
                tiers=tiers,
                project=cfg.project,
                store=clients.object_store(cfg, on_retry=lambda op: metrics.retries.labels(op).inc(), tiers=tiers),
                subscriber=clients.subscriber(cfg),
                publisher=clients.publisher(cfg),
                metrics=metrics,
                settings=cfg,
                crash=CrashPoints.parse(cfg.crash_at),
            )
            stop = worker.request_stop
            signal.signal(signal.SIGTERM, lambda *_: stop())
            signal.signal(signal.SIGINT, lambda *_: stop())
            worker.start()
        except Exception as exc:  # no subscription, no permission, no credentials, metrics port in use: one line
            _log.error("replicator failed to start: %s", _one_line(exc))
            code = 1
        else:
            worker.wait()
    except Exception:
        _log.exception("streaming pull failed for good")
        code = 1
    finally:
        if worker is not None:
            worker.stop()
        # Do not wait for abandoned callbacks (e.g. an upload still retrying): their messages are unacked and will be
        # redelivered. os._exit skips the interpreter's join of executor threads.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
