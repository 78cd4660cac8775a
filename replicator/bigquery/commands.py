"""``logpipe query`` and ``logpipe load``; ``register(app)`` adds them to the root CLI."""

from __future__ import annotations

import threading
from typing import Annotated, Any

import typer

_PROJECT = typer.Option("--project", envvar="GOOGLE_CLOUD_PROJECT", help="Project of the BigQuery jobs.")
_BQ_URL = typer.Option(
    "--bigquery-url", envvar="BIGQUERY_EMULATOR_HOST", help="BigQuery endpoint (the emulator); unset: real BigQuery."
)


def _bq_client(project: str, bigquery_url: str | None) -> Any:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    if bigquery_url:
        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=bigquery_url),
        )
    return bigquery.Client(project=project)


def _cell(value: Any) -> str:
    import json

    if value is None:
        return "NULL"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), default=str)
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 32 else f"{value[:32].hex()}... ({len(value)} bytes)"
    return str(value)


def query(
    sql: Annotated[str, typer.Argument(help="Standard SQL, e.g. 'SELECT COUNT(*) FROM logpipe.ads_click'.")],
    project: Annotated[str, _PROJECT] = "logpipe-local",
    bigquery_url: Annotated[str | None, _BQ_URL] = None,
    max_rows: Annotated[int, typer.Option(help="Print at most this many rows.")] = 100,
) -> None:
    """Run SQL on the configured BigQuery (locally: the emulator from `logpipe env`) and print a table."""
    from google.api_core import exceptions as gexc
    from rich.console import Console
    from rich.table import Table

    client = _bq_client(project, bigquery_url)
    console = Console()
    try:
        result = client.query(sql).result(max_results=max_rows)
        table = Table(*(f.name for f in result.schema), show_lines=False)
        shown = 0
        for row in result:
            table.add_row(*(_cell(v) for v in row.values()))
            shown += 1
        console.print(table)
        total = result.total_rows if result.total_rows is not None else shown
        console.print(f"{shown} row(s) shown" + (f" of {total}" if total > shown else ""))
    except gexc.GoogleAPICallError as exc:
        console.print(f"[red]query failed:[/red] {exc.message}")
        raise typer.Exit(1) from None
    finally:
        client.close()


def load(
    bucket: Annotated[str, typer.Option(envvar="LOGPIPE_BUCKET", help="The landing bucket.")],
    project: Annotated[str, _PROJECT] = "logpipe-local",
    bigquery_url: Annotated[str | None, _BQ_URL] = None,
    gcs_url: Annotated[str | None, typer.Option(envvar="STORAGE_EMULATOR_HOST", help="GCS endpoint.")] = None,
    catalog: Annotated[str | None, typer.Option(envvar="LOGPIPE_CATALOG", help="Catalog file.")] = None,
    dataset: Annotated[str | None, typer.Option(envvar="LOGPIPE_DATASET", help="Overrides the catalog.")] = None,
    tier: Annotated[list[str] | None, typer.Option(help="Tier to load (repeat); default: all.")] = None,
    interval: Annotated[float, typer.Option(envvar="LOGPIPE_BQ_INTERVAL", help="Seconds between passes.")] = 60.0,
    horizon_hours: Annotated[int, typer.Option(help="Fresh rows older than this are not shown.")] = 48,
    fresh_convert_lookback_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            help="Converting ahead of the passes (every 5 s) lists only the staging objects whose envelope id was"
            " made within this many seconds, not the current and previous hour whole (0: whole hours, which costs"
            " listing every object of two hours each time). Larger lists more each time; smaller leaves more objects"
            " with older ids (spool replays, a backlog older than this, a front-end clock behind by more) to be"
            " converted by the pass itself: queryable later, never lost.",
        ),
    ] = 120.0,
    lookback_hours: Annotated[int, typer.Option(help="How far back every pass looks for manifests to load.")] = 72,
    backfill_hours: Annotated[
        int, typer.Option(help="How far back the first pass, then one every backfill interval, looks (late data).")
    ] = 192,
    backfill_interval_seconds: Annotated[float, typer.Option(help="Seconds between two backfill passes.")] = 3600.0,
    max_attempts: Annotated[int, typer.Option(help="Hard cap on the failed jobs of one load.")] = 64,
    give_up_after_hours: Annotated[
        float, typer.Option(help="Hours a load may fail for retryable reasons (quota, ...) before it is given up.")
    ] = 48.0,
    job_prefix: Annotated[str, typer.Option(help="First part of every job id; a new one reloads from scratch.")] = (
        "logpipe"
    ),
    once: Annotated[bool, typer.Option(help="Run one pass and exit.")] = False,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on 127.0.0.1:PORT.")] = None,
    crash_at: Annotated[str | None, typer.Option(envvar="LOGPIPE_BQ_CRASH_AT", hidden=True)] = None,
) -> None:
    """Load landed data into BigQuery: committed manifests, and fresh staging objects within one interval.

    Creates or evolves the tables first and refuses an incompatible catalog. Safe to run on many workers at once."""
    import signal

    from pydantic import ValidationError

    from replicator.bigquery.errors import SchemaIncompatible
    from replicator.bigquery.loader import LoaderConfig, run_loader
    from replicator.bigquery.metrics import LoaderMetrics
    from replicator.commands import setup_logging

    setup_logging()  # text, or json with severity for Cloud Logging (the deployment sets LOGPIPE_LOG_FORMAT=json)
    try:
        config = LoaderConfig(
            project=project,
            bucket=bucket,
            bigquery_url=bigquery_url,
            gcs_url=gcs_url,
            catalog_path=catalog,
            dataset=dataset,
            tiers=tuple(tier or ()),
            interval_seconds=interval,
            horizon_hours=horizon_hours,
            fresh_convert_lookback_seconds=fresh_convert_lookback_seconds,
            lookback_hours=lookback_hours,
            backfill_hours=backfill_hours,
            backfill_interval_seconds=backfill_interval_seconds,
            max_attempts=max_attempts,
            give_up_after_hours=give_up_after_hours,
            job_prefix=job_prefix,
            crash_at=crash_at,
        )
    except ValidationError as exc:
        typer.echo("invalid loader options: " + "; ".join(str(e["msg"]) for e in exc.errors()), err=True)
        raise typer.Exit(2) from None
    metrics = LoaderMetrics()
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)
    stop = threading.Event()
    if once:
        stop.set()  # run_loader runs one pass, then sees the flag
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_loader(config, stop, metrics=metrics, run_first_pass=True)
    except SchemaIncompatible as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass
    p50, p99 = (metrics.ingest_to_queryable.percentile(q) for q in (0.5, 0.99))
    if p50 is not None:
        typer.echo(
            f"fresh latency ingest->queryable: p50 {p50:.1f}s p99 {p99:.1f}s over {len(metrics.ingest_to_queryable)}"
        )


def register(app: typer.Typer) -> None:
    """Add ``query`` and ``load`` to ``app``."""
    app.command("query")(query)
    app.command("load")(load)
