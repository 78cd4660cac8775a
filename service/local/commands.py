"""``logpipe local``, ``logpipe env``, ``logpipe smoke`` and ``logpipe demo``; ``register`` adds them to the root app.

Heavy imports happen inside the command functions so that ``logpipe --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StateDirOpt = Annotated[Path, typer.Option("--state-dir", help="Where the stack keeps state, logs, endpoints.json.")]
PortOpt = Annotated[int | None, typer.Option(help="Fixed port (default: a free one).", show_default=False)]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``local``, ``env``, ``smoke`` and ``demo`` to ``app``."""

    @app.command()
    def local(
        state_dir: StateDirOpt = Path(".logpipe"),
        frontends: Annotated[int, typer.Option(min=0, help="`logpipe serve` processes to run.")] = 1,
        replicators: Annotated[int, typer.Option(min=0, help="`logpipe replicate` processes to run.")] = 1,
        loaders: Annotated[int, typer.Option(min=0, help="`logpipe load` (GCS -> BigQuery) processes to run.")] = 1,
        project: Annotated[str, typer.Option(help="Project id for every emulator.")] = "logpipe-local",
        bucket: Annotated[str, typer.Option(help="Landing bucket name.")] = "logpipe-landing",
        catalog: Annotated[
            Path | None, typer.Option(help="Catalog YAML (default: deploy/terraform/catalog.yaml).")
        ] = None,
        pubsub_port: PortOpt = None,
        gcs_port: PortOpt = None,
        bigquery_port: PortOpt = None,
        bigquery_grpc_port: PortOpt = None,
        frontend_port: Annotated[
            int | None, typer.Option(help="First front-end port; the others follow (default: free ports).")
        ] = None,
        pubsub_emulator: Annotated[Path | None, typer.Option(hidden=True)] = None,
        bq_venv: Annotated[Path | None, typer.Option(hidden=True)] = None,
    ) -> None:
        """Run the local cloud in the foreground: emulators, provisioning, front-ends, replicators. Ctrl-C stops it."""
        from service.catalog import default_catalog_path
        from service.local.config import BQ_VENV, PUBSUB_EMULATOR, LocalConfig, Ports
        from service.local.runner import run_foreground

        config = LocalConfig(
            state_dir=state_dir,
            project=project,
            bucket=bucket,
            catalog_path=catalog or default_catalog_path(),
            frontends=frontends,
            replicators=replicators,
            loaders=loaders,
            ports=Ports(pubsub_port, gcs_port, bigquery_port, bigquery_grpc_port, frontend_port),
            pubsub_emulator=pubsub_emulator or PUBSUB_EMULATOR,
            bq_venv=bq_venv or BQ_VENV,
        )
        raise typer.Exit(run_foreground(config))

    @app.command()
    def env(state_dir: StateDirOpt = Path(".logpipe")) -> None:
        """Print `export` lines that point clients and logpipe commands at a running `logpipe local`.

        Use as: eval "$(logpipe env --state-dir DIR)".
        """
        import shlex

        from service.local.endpoints import Endpoints
        from service.local.errors import LocalCloudError

        try:
            endpoints = Endpoints.load_live(state_dir)
        except LocalCloudError as exc:
            raise _fail(str(exc)) from None
        for key, value in endpoints.env().items():
            typer.echo(f"export {key}={shlex.quote(value)}")

    @app.command()
    def smoke(
        state_dir: Annotated[
            Path | None, typer.Option("--state-dir", help="State directory (default: a temporary one).")
        ] = None,
    ) -> None:
        """Smoke-check the local cloud: start it, publish and pull, write an object, load and query, stop it."""
        import signal
        import sys

        from service.local.errors import LocalCloudError
        from service.local.smoke import demo as run_smoke

        # SIGTERM unwinds like Ctrl-C, so the stack's context manager stops every child.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        try:
            run_smoke(state_dir)
        except LocalCloudError as exc:
            raise _fail(str(exc)) from None

    from service.demo.commands import demo  # `logpipe demo`, what `make demo` runs: the end-to-end demo

    app.command("demo")(demo)
