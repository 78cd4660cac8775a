"""``logpipe categories``: show the configured tiers and categories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

CatalogOpt = Annotated[
    Path | None,
    typer.Option("--catalog", envvar="LOGPIPE_CATALOG", help="Catalog YAML (default: deploy/terraform/catalog.yaml)."),
]


def register(app: typer.Typer) -> None:
    """Add ``categories`` to ``app``."""

    @app.command()
    def categories(
        catalog: CatalogOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    ) -> None:
        """List the configured tiers and categories (name, tier, payload format, file format, topic)."""
        from rich.console import Console
        from rich.table import Table

        from service.catalog import CatalogError, load_catalog

        try:
            cat = load_catalog(catalog)
        except CatalogError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        rows = [
            {
                "name": c.name,
                "tier": c.tier,
                "payload_format": c.payload_format.value,
                "file_format": c.file_format.value,
                "topic": cat.topic(c.tier),
                "subscription": cat.subscription(c.tier),
                "table": f"{cat.dataset}.{c.name}",
                "fields": [{"name": f.name, "type": f.type.value} for f in c.fields],
            }
            for c in cat.categories
        ]
        if as_json:
            typer.echo(json.dumps({"tiers": [t.model_dump() for t in cat.tiers], "categories": rows}, indent=2))
            return
        table = Table(title="logpipe categories")
        for col in ("name", "tier", "payload_format", "file_format", "topic", "table"):
            table.add_column(col)
        for r in rows:
            table.add_row(*(str(r[k]) for k in ("name", "tier", "payload_format", "file_format", "topic", "table")))
        Console().print(table)
