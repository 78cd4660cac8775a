"""``logpipe finalize``: one finalization pass over the landing bucket, then exit (``replicator.finalize``).

``--before`` (``_parse_before``) closes every partition ending at or before a given time; without it, partitions
older than now - lateness close. Unlike the worker's loop, it always lists every staging object of each category (a
full scan, no hot window: ``FinalizeSettings.hot_window`` is None), so it finds late data in hours of any age.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Annotated

import typer

from replicator.commands._common import _GCS_DEADLINE, _catalog, _categories, _config, _one_line, setup_logging

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
        "finalize": False,  # no finalizer loop, so no hot window to check against the lateness: this pass lists all
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
                f"committed {m.category} {m.partition_label} {m.shard.label + '-' if m.shard.count > 1 else ''}"
                f"g{m.generation:04d} events={m.total_events} "
                f"files={len(m.files)} duplicates={m.duplicates_dropped}"
            )
    if fin.failures:
        raise typer.Exit(1)
