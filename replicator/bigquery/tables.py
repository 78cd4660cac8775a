"""``ensure_tables``: create or evolve every table and view the catalog implies. Idempotent; safe on many workers.

Contract:
  * Reads the live dataset first and raises ``SchemaIncompatible`` (listing every problem) BEFORE changing anything,
    so an incompatible catalog is refused at start-up of ``logpipe replicate`` / ``logpipe load`` / ``logpipe local``.
  * Then creates what is missing (``exists_ok``: a racing worker is fine), appends new NULLABLE columns to committed
    tables (``update_table``: no downtime; BigQuery keeps serving the table), and creates or replaces each view whose
    SQL changed (a view replacement is atomic for readers).
  * Blocks for a few API calls per category. BigQuery errors propagate (``google.api_core.exceptions``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from typing import Any

from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from replicator.bigquery import names
from replicator.bigquery.errors import SchemaIncompatible
from replicator.bigquery.schema import Evolution, category_schema, fresh_schema, plan_evolution
from replicator.bigquery.views import DEFAULT_HORIZON_HOURS, view_sql
from service.catalog import Catalog, Category

log = logging.getLogger(__name__)
_DAY_MS = 86_400_000


def _get(client: bigquery.Client, ref: str) -> Any:
    try:
        return client.get_table(ref)
    except NotFound:
        return None


def _partitioned(table: bigquery.Table, expiration_days: int | None) -> bigquery.Table:
    table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY,
        field="event_time",
        expiration_ms=expiration_days * _DAY_MS if expiration_days else None,
    )
    return table


def fresh_expiration_days(horizon_hours: int) -> int:
    """Fresh rows older than the view's horizon are never shown; keep one extra day, then let BigQuery drop them."""
    return math.ceil(horizon_hours / 24) + 1


def ensure_tables(
    bq_client: bigquery.Client,
    catalog: Catalog,
    *,
    dataset: str | None = None,
    horizon_hours: int = DEFAULT_HORIZON_HOURS,
) -> str | None:
    """Create/evolve ``<category>__committed``, ``_fresh_<tier>`` and the view ``<category>`` for the catalog.
    Returns the dataset's location (None if the server does not say), for the load jobs.

    Raises:
        SchemaIncompatible: a live table cannot evolve into the catalog's schema, or a view name is taken by a table.
    """
    project = bq_client.project
    ds = dataset or catalog.dataset
    location = _ensure_dataset(bq_client, f"{project}.{ds}")
    problems: list[str] = []
    creates: list[bigquery.Table] = []
    evolutions: list[tuple[Any, Evolution]] = []
    views: list[tuple[Category, Any]] = []

    def plan_table(table_id: str, schema: list[bigquery.SchemaField], build: bigquery.Table) -> None:
        live = _get(bq_client, f"{project}.{ds}.{table_id}")
        if live is None:
            creates.append(build)
            return
        evo, bad = plan_evolution(table_id, live.schema, schema)
        problems.extend(bad)
        if evo.additions:
            evolutions.append((live, evo))

    for c in catalog.categories:
        if c.name.endswith(names.COMMITTED_SUFFIX):
            problems.append(f"category {c.name!r}: names ending in {names.COMMITTED_SUFFIX!r} are reserved")
            continue
        ref = f"{project}.{ds}.{names.committed_table(c.name)}"
        schema = category_schema(c)
        table = _partitioned(bigquery.Table(ref, schema=schema), c.partition_expiration_days)
        table.clustering_fields = list(c.clustering)
        table.description = f"logpipe: committed partitions of {c.name}. Query the view {ds}.{c.name} instead."
        plan_table(names.committed_table(c.name), schema, table)
        view = _get(bq_client, f"{project}.{ds}.{c.name}")
        if view is not None and view.table_type != "VIEW":
            problems.append(f"{ds}.{c.name}: exists as a {view.table_type}, logpipe needs the name for a view")
        views.append((c, view))

    for tier in sorted({c.tier for c in catalog.categories}):
        schema = fresh_schema()
        ref = f"{project}.{ds}.{names.fresh_table(tier)}"
        table = _partitioned(bigquery.Table(ref, schema=schema), fresh_expiration_days(horizon_hours))
        table.clustering_fields = ["category", "event_id"]
        table.description = f"logpipe: fresh (not yet committed) rows of tier {tier}. Query the category views."
        plan_table(names.fresh_table(tier), schema, table)

    if problems:
        raise SchemaIncompatible(problems)

    for t in creates:
        bq_client.create_table(t, exists_ok=True)
        log.info("created table %s", t.table_id)
    for live, evo in evolutions:
        live.schema = [*live.schema, *evo.additions]
        bq_client.update_table(live, ["schema"])
        log.info("added columns %s to %s", [f.name for f in evo.additions], evo.table)
    for c, existing in views:
        sql = view_sql(project, ds, c, horizon_hours)
        # The description carries a digest of the SQL we wrote: servers may re-render the stored query text.
        stamp = f"[logpipe view {hashlib.sha256(sql.encode()).hexdigest()[:16]}]"
        if existing is not None and stamp in (existing.description or ""):
            continue
        # DDL rather than update_table(view_query): atomic for readers on BigQuery, and local-bigquery stores a
        # patched view_query without applying it.
        bq_client.query(f"CREATE OR REPLACE VIEW `{project}.{ds}.{c.name}` AS\n{sql}", location=location).result()
        view = bq_client.get_table(f"{project}.{ds}.{c.name}")
        view.description = f"{c.description or f'logpipe category {c.name}'} Each event_id exactly once. {stamp}"
        bq_client.update_table(view, ["description"])
        log.info("view %s.%s replaced", ds, c.name)
    return location


def _ensure_dataset(client: bigquery.Client, ref: str) -> str | None:
    """Get the dataset, creating it only when it does not exist; returns its location. Decision: not
    ``create_dataset(exists_ok=True)``, which BigQuery authorises against ``bigquery.datasets.create`` on the project
    before it looks for the dataset, so a loader with only dataset-level roles (Terraform's least privilege) got 403
    for a dataset that Terraform had made."""
    try:
        found = client.get_dataset(ref)
    except NotFound:
        found = client.create_dataset(ref, exists_ok=True)  # exists_ok: another loader may create it meanwhile
    location = getattr(found, "location", None)
    return location if isinstance(location, str) and location else None


def provision_step(endpoints: Any, catalog: Catalog) -> None:
    """``ensure_tables`` as a ``logpipe local`` provisioning step (``service.local.provision.EXTRA_STEPS`` entry
    ``"replicator.bigquery.tables:provision_step"``); ``endpoints`` is a ``service.local.endpoints.Endpoints``."""
    from service.local.clients import bigquery_client

    client = bigquery_client(endpoints)
    try:
        ensure_tables(client, catalog, dataset=endpoints.dataset)
    finally:
        client.close()  # type: ignore[no-untyped-call]
