"""Schema evolution on the local cloud: a new NULLABLE catalog field is added with no downtime (the table keeps
serving, old rows read NULL, new rows carry the value on both paths); removing or retyping a field is refused at start
with a clear error, before anything changes."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from replicator.bigquery import names
from replicator.bigquery.errors import SchemaIncompatible
from replicator.bigquery.loader import Loader
from replicator.bigquery.tables import ensure_tables
from service.catalog import Catalog, parse_catalog
from service.local.endpoints import Endpoints
from tests.integration.test_bigquery_loading import now
from tests.integration.test_bigquery_support import BqEnv, ids, make_env

pytestmark = pytest.mark.integration
LOGPIPE = str(Path(sys.executable).with_name("logpipe"))


@pytest.fixture
def env(local_cloud: Endpoints) -> BqEnv:
    e = make_env(local_cloud)
    ensure_tables(e.bq, e.catalog, dataset=e.dataset)
    return e


def changed(catalog: Catalog, category: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    data = catalog.model_dump(mode="json")
    for c in data["categories"]:
        if c["name"] == category:
            c["fields"] = fields
    return data


def column_names(env: BqEnv, table: str) -> list[str]:
    return [f.name for f in env.bq.get_table(f"{env.endpoints.project}.{env.dataset}.{table}").schema]


def test_adding_a_nullable_field_evolves_tables_and_view(env: BqEnv) -> None:
    t = now()
    old = ids("old", 10)
    env.land("ads_click", old, t)
    env.run(env.loader())
    env.commit("ads_click", t)
    env.run(env.loader())

    fields = [f.model_dump(mode="json") for f in env.catalog.category("ads_click").fields]
    new_catalog = parse_catalog(changed(env.catalog, "ads_click", [*fields, {"name": "seq", "type": "INT64"}]))
    ensure_tables(env.bq, new_catalog, dataset=env.dataset)
    assert column_names(env, names.committed_table("ads_click"))[-1] == "seq"
    assert column_names(env, "ads_click")[-1] == "seq"
    assert env.counts("ads_click") == (10, 10), "the table kept serving its rows"

    env.catalog = new_catalog
    env.finalizer.catalog = new_catalog
    new = ids("new", 6)
    t2 = t - dt.timedelta(hours=1)  # an open hour: the fresh path does not list hours with _SUCCESS, as t has now
    env.land("ads_click", new, t2)
    loader = Loader(env.config(), new_catalog, env.bq, env.store)
    env.run(loader)
    sql = f"SELECT COUNT(seq) AS s, COUNT(*) AS n FROM `{env.endpoints.project}.{env.dataset}.ads_click`"
    row = next(iter(env.bq.query(sql).result()))
    assert (row["s"], row["n"]) == (6, 16), "fresh rows carry the new field, old rows read NULL"
    env.commit("ads_click", t2)
    env.run(loader)
    row = next(iter(env.bq.query(sql).result()))
    assert (row["s"], row["n"]) == (6, 16), "committed rows too"
    assert env.counts("ads_click") == (16, 16)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ([{"name": "campaign_id", "type": "STRING"}, {"name": "user_id", "type": "STRING"}], "cost_micros"),
        (
            [
                {"name": "campaign_id", "type": "STRING"},
                {"name": "user_id", "type": "INT64"},
                {"name": "cost_micros", "type": "INT64"},
            ],
            "user_id: type STRING in BigQuery, INTEGER in the catalog",
        ),
    ],
    ids=["removed", "retyped"],
)
def test_incompatible_change_is_refused_before_anything_changes(
    env: BqEnv, fields: list[dict[str, Any]], message: str
) -> None:
    before = column_names(env, names.committed_table("ads_click"))
    bad = parse_catalog(changed(env.catalog, "ads_click", [*fields, {"name": "extra", "type": "STRING"}]))
    with pytest.raises(SchemaIncompatible) as info:
        ensure_tables(env.bq, bad, dataset=env.dataset)
    assert message in str(info.value)
    assert column_names(env, names.committed_table("ads_click")) == before, "nothing was added"


def test_cli_refuses_an_incompatible_catalog_with_a_clear_error(env: BqEnv, tmp_path: Path) -> None:
    data = changed(env.catalog, "ads_click", [{"name": "campaign_id", "type": "STRING"}])
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [LOGPIPE, *env.cli_args(), "--catalog", str(path)], capture_output=True, timeout=120, env=dict(os.environ)
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "incompatible" in err and "user_id" in err and "cost_micros" in err
