"""What the replicator's commands share: logging set-up, configuration and catalog from the flags and the
environment, the ``--category`` check, and the one-line error an operator reads. Each problem with the flags or the
environment is a usage error (exit 2) that names it.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import typer


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


_GCS_DEADLINE = typer.Option(help="Total seconds to retry one transient GCS failure before giving up (default 60).")
