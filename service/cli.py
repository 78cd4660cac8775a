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
    # Plain (click-style) help for every command: long option names and defaults are never cut at 80 columns, and a
    # flag shows no type. Rich's option table truncates its first column and adds a type column to every row.
    rich_markup_mode=None,
    context_settings={"max_content_width": 120},  # use up to 120 columns when the terminal has them
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


NO_CREDENTIALS = (
    "error: no Google credentials found. For the local cloud, point logpipe at its emulators (BIGQUERY_EMULATOR_HOST "
    'and the others): eval "$(logpipe env --state-dir DIR)"; for Google Cloud, run `gcloud auth '
    "application-default login` or set GOOGLE_APPLICATION_CREDENTIALS."
)


def main() -> None:
    """Console-script entry point. Missing Google credentials end in one line on stderr and exit 1, not a traceback."""
    try:
        app()
    except Exception as exc:
        from google.auth.exceptions import DefaultCredentialsError

        if not isinstance(exc, DefaultCredentialsError):
            raise
        typer.echo(NO_CREDENTIALS, err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
