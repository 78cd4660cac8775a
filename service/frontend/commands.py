"""``logpipe serve`` (the ingest front-end) and ``logpipe send`` (JSON lines -> the SDK). See docs/ingest.md."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def _parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--set expects FIELD=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value
    return out


def serve(
    config: Annotated[Path | None, typer.Option("--config", help="YAML file with FrontendConfig fields.")] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port; 0 picks a free one (see --port-file).")] = None,
    port_file: Annotated[Path | None, typer.Option(help="Write the bound port here once serving.")] = None,
    catalog: Annotated[Path | None, typer.Option(help="Catalog YAML (default $LOGPIPE_CATALOG).")] = None,
    project: Annotated[str | None, typer.Option(help="GCP project of the topics.")] = None,
    pubsub_emulator_host: Annotated[str | None, typer.Option(help="host:port of a Pub/Sub emulator.")] = None,
    spool_dir: Annotated[Path | None, typer.Option(help="Spool directory (one per front-end).")] = None,
    tokens_file: Annotated[Path | None, typer.Option(help="Bearer tokens file; enables auth.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server private key (PEM).")] = None,
    allow_insecure_remote: Annotated[
        bool | None, typer.Option("--allow-insecure-remote", help="Allow plaintext on a non-loopback address.")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus port; 0 disables.")] = None,
    instance_id: Annotated[str | None, typer.Option(help="Name in envelopes and logs (default host-pid).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Any other config field: FIELD=VALUE.")] = None,
) -> None:
    """Run the ingest front-end until SIGTERM/SIGINT, then drain to Pub/Sub or the spool and exit."""
    from service.frontend.run import run_frontend

    flags: dict[str, Any] = {
        "host": host, "port": port, "port_file": port_file, "catalog": catalog, "project": project,
        "pubsub_emulator_host": pubsub_emulator_host, "spool_dir": spool_dir, "tokens_file": tokens_file,
        "tls_cert": tls_cert, "tls_key": tls_key, "allow_insecure_remote": allow_insecure_remote,
        "metrics_port": metrics_port, "instance_id": instance_id,
    }  # fmt: skip
    flags.update(_parse_sets(set_ or []))
    raise typer.Exit(run_frontend(config, dict(os.environ), flags))


def send(
    file: Annotated[str, typer.Argument(help="JSON lines file, or - for stdin.")] = "-",
    category: Annotated[str, typer.Option(help="Category of every event.")] = ...,  # type: ignore[assignment]
    target: Annotated[
        str | None, typer.Option(help="host:port[,host:port...]; default $LOGPIPE_INGEST_TARGET.")
    ] = None,
    token: Annotated[str | None, typer.Option(help="Bearer token; default $LOGPIPE_TOKEN.")] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Use TLS.")] = False,
    ca_cert: Annotated[Path | None, typer.Option(help="CA certificate for TLS.")] = None,
    batch: Annotated[int, typer.Option(min=1, help="Events per request.")] = 500,
) -> None:
    """Send JSON lines and print accepted/rejected counts.

    One event per line: {"payload": ..., "event_time": "RFC 3339", "attributes": {"k": "v"}, "event_id": "...",
    "producer": "..."}; only payload is required. Exits 1 when any event is rejected or failed (reasons on stderr), 2
    on bad input or usage (nothing is sent)."""
    from service.frontend.send import run_send

    target = target or os.environ.get("LOGPIPE_INGEST_TARGET")
    if not target:
        typer.echo("error: no --target and LOGPIPE_INGEST_TARGET is not set", err=True)
        raise typer.Exit(2)
    try:
        stream = sys.stdin if file == "-" else open(file, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        typer.echo(f"error: cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    try:
        code = run_send(stream, category=category, target=target, token=token or os.environ.get("LOGPIPE_TOKEN"),
                        tls=tls, ca_cert=ca_cert, batch=batch)  # fmt: skip
    finally:
        if stream is not sys.stdin:
            stream.close()
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("serve")(serve)
    app.command("send")(send)
