"""``logpipe partitions``: list the partitions of the landing bucket with their state (``replicator.scan``), as a
table or as JSON lines.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Annotated, Any

import typer

from replicator.commands._common import _GCS_DEADLINE, _catalog, _categories, _config, _one_line


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
    """List partitions with their state (open / committed / complete), shard count (the category's
    ``finalize_shards``, fixed per partition; generations then counts the furthest shard's), events, files and
    manifests, and which workers hold the finalization claims of a partition being finalized now.

    A partition that cannot be read (a corrupt manifest or ``_plan.json``) is named on stderr and skipped; one whose
    manifests disagree with its shard plan (a conflict finalizers refuse to commit on; docs/deploy.md) is listed
    with ``foreign_manifests`` and named on stderr. Exit 1 when the bucket or a partition cannot be read, or a
    partition has such a conflict; 2 on a usage error."""
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
    from replicator.claims import holder
    from replicator.errors import StoreError
    from replicator.layout import Shard
    from replicator.manifest import ManifestError
    from replicator.plan import PlanError
    from replicator.scan import committed_partitions, read_partition, staged_partitions

    store = clients.object_store(cfg)
    now = dt.datetime.now(dt.UTC)
    rows = []
    problems = 0
    try:
        for name in cats:
            parts = set(staged_partitions(store, name)) | committed_partitions(store, name)
            for p in sorted(parts):
                try:
                    s = read_partition(store, p)
                except (ManifestError, PlanError) as exc:
                    problems += 1
                    where = f"{p.category} {p.hour:%Y-%m-%dT%H}"
                    typer.echo(f"partitions: {where}: cannot read: {_one_line(exc)}", err=True)
                    continue
                if s.foreign:
                    problems += 1
                    typer.echo(
                        f"partitions: {p.category} {p.hour:%Y-%m-%dT%H}: {len(s.foreign)} manifest(s) disagree with "
                        f"its plan of {s.shards} shard(s), e.g. {s.foreign[0]}; finalizers refuse it (docs/deploy.md,"
                        " 'Upgrades and shard plan conflicts')",
                        err=True,
                    )
                held = [h for k in Shard.all(s.shards) if s.pending and (h := holder(store, p, now, shard=k))]
                rows.append(
                    {
                        "category": p.category,
                        "partition": p.hour.strftime("%Y-%m-%dT%H"),
                        "state": s.state,
                        "shards": s.shards,
                        "generations": s.generation,
                        "committed_events": s.committed_events,
                        "files": sum(len(m.files) for _, m in s.manifests),
                        "pending_staging": len(s.pending),
                        "staging": len(s.staging),
                        "manifests": [n for n, _ in s.manifests],
                        "foreign_manifests": s.foreign,
                        "success": s.success,
                        "claimed_by": ",".join(sorted({h[0] for h in held})) or None,
                        "claim_expires": max(h[1] for h in held).isoformat() if held else None,
                    }
                )
    except StoreError as exc:
        typer.echo(f"partitions: cannot read the landing bucket {cfg.bucket}: {_one_line(exc)}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r))
    else:
        _print_table(rows)
    if problems:
        raise typer.Exit(1)


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="partitions")
    cols: tuple[str, ...] = (
        "category",
        "partition",
        "state",
        "shards",
        "generations",
        "committed_events",
        "files",
        "pending_staging",
    )
    if any(r["claimed_by"] for r in rows):  # a worker is finalizing it now
        cols = (*cols, "claimed_by")
    for col in cols:
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c] or "") if c == "claimed_by" else str(r[c]) for c in cols))
    Console().print(table)
