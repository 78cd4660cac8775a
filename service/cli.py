"""The ``logpipe`` command.

Each area registers its own sub-commands from its own module (``register(app)``), so the CLI root stays small and the
areas stay independent. Heavy imports happen inside the command functions, so ``logpipe --help`` is fast.
"""

from __future__ import annotations

import os

import typer

from replicator import commands as replicator_commands
from replicator.bigquery import commands as bigquery_commands
from service import bench_commands, catalog_commands
from service.frontend import commands as frontend_commands
from service.local import commands as local_commands

app = typer.Typer(
    name="logpipe",
    help="Carry log events from on-premises services into Google Cloud: gRPC ingest -> Pub/Sub -> GCS -> BigQuery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


# google-cloud-storage (3.x) starts a background thread per client and bucket that GETs the bucket's metadata, only
# to decorate OpenTelemetry spans, even with tracing off. It needs storage.buckets.get, which the least-privilege
# roles need not grant, and it retries for up to 120 s after the endpoint is gone. logpipe turns it off unless the
# environment says otherwise (docs/design.md, Decisions).
GCS_BUCKET_METADATA_SWITCH = "DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA"


@app.callback()
def _root() -> None:
    """logpipe: gRPC ingest -> Pub/Sub -> exactly-once GCS files -> BigQuery. See `logpipe COMMAND --help`."""
    os.environ.setdefault(GCS_BUCKET_METADATA_SWITCH, "true")  # inherited by every process logpipe starts


catalog_commands.register(app)
local_commands.register(app)
frontend_commands.register(app)
replicator_commands.register(app)
bigquery_commands.register(app)
bench_commands.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
