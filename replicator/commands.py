"""Sub-commands of ``logpipe`` for the replicator: ``replicate``, ``finalize``, ``partitions``.

The CLI/environment contract is documented in docs/design.md ("CLI and environment contract"). Heavy imports stay
inside the command functions so ``logpipe --help`` is fast.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import logging
import os
import signal
import sys
from typing import Annotated, Any

import typer

_log = logging.getLogger("replicator")


def setup_logging() -> None:
    """stderr logging from ``LOGPIPE_LOG_LEVEL`` (INFO) and ``LOGPIPE_LOG_FORMAT`` (text, or json for Cloud Logging:
    the deployments set it). An unknown format is a usage error (exit 2)."""
    from service.frontend.logs import configure_cli

    try:
        configure_cli(os.environ.get("LOGPIPE_LOG_LEVEL", "INFO"), os.environ.get("LOGPIPE_LOG_FORMAT", "text"))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _config(ctx: typer.Context, flags: dict[str, Any]) -> Any:
    """``ReplicatorConfig`` from the flags and the environment; a usage error (exit 2) naming each bad field."""
    from replicator.config import ReplicatorConfig
    from replicator.errors import ConfigError

    try:
        return ReplicatorConfig.from_sources(flags, os.environ)
    except ConfigError as exc:
        ctx.fail(str(exc))


def _catalog(path: str | None) -> Any:
    from service.catalog import CatalogError, load_catalog

    try:
        return load_catalog(path)
    except CatalogError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _categories(cat: Any, names: list[str] | None) -> tuple[str, ...]:
    """The ``--category`` values (default: every category of the catalog); a usage error names an unknown one."""
    known = [c.name for c in cat.categories]
    for name in names or ():
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise typer.BadParameter(
                f"unknown category {name!r}{hint}; the catalog has: {', '.join(sorted(known))}",
                param_hint="'--category'",
            )
    return tuple(names or ()) or tuple(known)


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, for the error an operator reads instead of a traceback."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


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
            "a nacked message keeps its hour open (default 120; 0 = only messages held now)."
        ),
    ] = None,
    finalize_interval: Annotated[
        float | None, typer.Option(help="Seconds between finalizer passes (default 30).")
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


BEFORE_FORMS = "an RFC 3339 time with an offset or Z (e.g. 2026-11-26T14:00:00Z, 2026-11-26T15:00:00+01:00), or now"


def _parse_before(before: str) -> dt.datetime:
    """``--before``: ``now``, or an RFC 3339 time with a UTC offset or ``Z`` (``T``/``Z`` in either case).

    Raises:
        typer.BadParameter: anything else, including a time without an offset (its zone would be a guess).
    """
    text = before.strip()
    if text.lower() == "now":
        return dt.datetime.now(dt.UTC)
    try:
        t = dt.datetime.fromisoformat(text.upper())
    except ValueError:
        raise typer.BadParameter(f"{before!r} is not {BEFORE_FORMS}", param_hint="'--before'") from None
    if t.tzinfo is None:
        raise typer.BadParameter(
            f"{before!r} has no UTC offset; add Z or +HH:MM (expected {BEFORE_FORMS})", param_hint="'--before'"
        )
    return t


_GCS_DEADLINE = typer.Option(help="Total seconds to retry one transient GCS failure before giving up (default 60).")


def finalize(
    ctx: typer.Context,
    before: Annotated[
        str | None,
        typer.Option(
            help="Close every partition ending at or before this time: an RFC 3339 time with an offset or Z "
            "(e.g. 2026-11-26T14:00:00Z), or 'now'. A time without an offset is refused."
        ),
    ] = None,
    category: Annotated[
        list[str] | None, typer.Option("--category", help="Category (repeatable); default: all.")
    ] = None,
    lateness_seconds: Annotated[
        float | None, typer.Option(help="Without --before: close partitions older than now - lateness.")
    ] = None,
    target_file_bytes: Annotated[
        int | None, typer.Option(help="Approximate size of a data file (default 128 MiB).")
    ] = None,
    bucket: Annotated[str | None, typer.Option(help="Landing bucket (env LOGPIPE_BUCKET).")] = None,
    catalog: Annotated[str | None, typer.Option(help="Catalog YAML (env LOGPIPE_CATALOG).")] = None,
    gcs_deadline: Annotated[float | None, _GCS_DEADLINE] = None,
) -> None:
    """Run one finalization pass and exit; prints one line per committed manifest.

    Exit 0 when every closable partition was finalized, 1 when one failed or the bucket could not be listed, 2 on a
    usage error."""
    setup_logging()
    cutoff = _parse_before(before) if before is not None else None
    flags = {
        "bucket": bucket,
        "catalog_path": catalog,
        "lateness_seconds": lateness_seconds,
        "target_file_bytes": target_file_bytes,
        "gcs_deadline": gcs_deadline,
        "project": os.environ.get("GOOGLE_CLOUD_PROJECT") or "local",
    }
    cfg = _config(ctx, flags)
    cat = _catalog(cfg.catalog_path)
    cats = _categories(cat, category)
    from replicator import clients
    from replicator.crash import CrashPoints
    from replicator.errors import StoreError
    from replicator.finalize import Finalizer, FinalizeSettings
    from replicator.layout import Partition
    from replicator.metrics import Metrics

    now = dt.datetime.now(dt.UTC)

    def closable(p: Partition) -> bool:
        return p.end <= cutoff if cutoff is not None else now >= p.end + cfg.lateness

    fin = Finalizer(
        clients.object_store(cfg),
        cat,
        Metrics(),
        FinalizeSettings(cfg.target_file_bytes, cfg.writer, cfg.lateness),
        crash=CrashPoints.parse(cfg.crash_at),
    )
    for name in cats:  # one category at a time: what was committed is printed before a later listing fails
        try:
            committed = fin.run_pass((name,), closable)
        except StoreError as exc:  # listing the bucket failed: no such bucket, no permission, unreachable
            typer.echo(f"finalize {name}: cannot list the landing bucket {cfg.bucket}: {_one_line(exc)}", err=True)
            raise typer.Exit(1) from None
        for m in committed:
            typer.echo(
                f"committed {m.category} {m.partition_label} g{m.generation:04d} events={m.total_events} "
                f"files={len(m.files)} duplicates={m.duplicates_dropped}"
            )
    if fin.failures:
        raise typer.Exit(1)


def partitions(
    ctx: typer.Context,
    category: Annotated[
        list[str] | None, typer.Option("--category", help="Category (repeatable); default: all.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
    bucket: Annotated[str | None, typer.Option(help="Landing bucket (env LOGPIPE_BUCKET).")] = None,
    catalog: Annotated[str | None, typer.Option(help="Catalog YAML (env LOGPIPE_CATALOG).")] = None,
    gcs_deadline: Annotated[float | None, _GCS_DEADLINE] = None,
) -> None:
    """List partitions with their state (open / committed / complete), events, files and manifests.

    Exit 1 when the bucket cannot be read, 2 on a usage error."""
    cfg = _config(
        ctx,
        {
            "bucket": bucket,
            "catalog_path": catalog,
            "gcs_deadline": gcs_deadline,
            "project": os.environ.get("GOOGLE_CLOUD_PROJECT") or "local",
        },
    )
    cat = _catalog(cfg.catalog_path)
    cats = _categories(cat, category)
    from replicator import clients
    from replicator.errors import StoreError
    from replicator.scan import committed_partitions, read_partition, staged_partitions

    store = clients.object_store(cfg)
    rows = []
    try:
        for name in cats:
            parts = set(staged_partitions(store, name)) | committed_partitions(store, name)
            for p in sorted(parts):
                s = read_partition(store, p)
                rows.append(
                    {
                        "category": p.category,
                        "partition": p.hour.strftime("%Y-%m-%dT%H"),
                        "state": s.state,
                        "generations": s.generation,
                        "committed_events": s.committed_events,
                        "files": sum(len(m.files) for _, m in s.manifests),
                        "pending_staging": len(s.pending),
                        "staging": len(s.staging),
                        "manifests": [n for n, _ in s.manifests],
                        "success": s.success,
                    }
                )
    except StoreError as exc:
        typer.echo(f"partitions: cannot read the landing bucket {cfg.bucket}: {_one_line(exc)}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="partitions")
    cols = ("category", "partition", "state", "generations", "committed_events", "files", "pending_staging")
    for col in cols:
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) for c in cols))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("replicate")(replicate)
    app.command("finalize")(finalize)
    app.command("partitions")(partitions)
