"""Terraform and Python derive the same names and tables from the same catalog, so the two cannot drift.

A real `terraform plan` of deploy/terraform runs through the fake providers (no cloud), once with the shipped catalog
and once with a different one (other prefix, dataset, tiers and defaults left out). The planned Pub/Sub names and
settings are compared with service.catalog, and the planned BigQuery tables with replicator/bigquery (names, schema,
partition expiry), which is what `logpipe load` creates and checks at start-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tf_harness

from replicator.bigquery import names
from replicator.bigquery.schema import _norm, category_schema, fresh_schema
from replicator.bigquery.tables import fresh_expiration_days
from replicator.bigquery.views import DEFAULT_HORIZON_HOURS
from service.catalog import Catalog, load_catalog

pytestmark = pytest.mark.unit

DAY_MS = 86_400_000
OTHER_CATALOG = """
name_prefix: acme
dataset: acme_logs
tiers:
  - name: hot-eu
    ack_deadline_seconds: 120
    max_delivery_attempts: 7
    message_retention_seconds: 86400
  - name: cold
categories:
  - name: checkout
    tier: hot-eu
    payload_format: json
    fields:
      - {name: amount, type: FLOAT64, description: Order total.}
      - {name: paid_at, type: TIMESTAMP}
      - {name: ok, type: BOOL}
    partition_expiration_days: 90
  - name: blob_dump
    tier: cold
    payload_format: bytes
"""


def plan(tf: tf_harness.FakeProviders, tmp_path: Path, catalog_file: Path | None) -> dict[str, Any]:
    """``terraform plan`` of the root module; returns ``terraform show -json`` of the plan."""
    data_dir = tmp_path / "tf-data"
    tf.terraform(["get", "-no-color"], tf_harness.TERRAFORM_DIR, data_dir=data_dir)
    args = [
        "plan", "-no-color", "-input=false", "-refresh=false", "-lock=false", f"-out={tmp_path / 'plan.bin'}",
        "-var", "project_id=parity-proj-1", "-var", "region=europe-west1",
        "-var", "replicator_image=europe-docker.pkg.dev/parity-proj-1/logpipe/logpipe:0.1.0",
    ]  # fmt: skip
    if catalog_file is not None:
        args += ["-var", f"catalog_file={catalog_file}"]
    tf.terraform(args, tf_harness.TERRAFORM_DIR, data_dir=data_dir)
    shown = tf.terraform(["show", "-json", str(tmp_path / "plan.bin")], tf_harness.TERRAFORM_DIR, data_dir=data_dir)
    return dict(json.loads(shown.stdout))


def planned(doc: dict[str, Any], type_name: str) -> list[dict[str, Any]]:
    return [rc["change"]["after"] for rc in doc["resource_changes"] if rc["type"] == type_name]


def columns(schema: list[Any]) -> list[tuple[str, str, str, str]]:
    return [(f.name, *_norm(f), f.description or "") for f in schema]


def tf_columns(schema_json: str) -> list[tuple[str, str, str, str]]:
    out = []
    for c in json.loads(schema_json):
        t = c["type"].upper()
        out.append((c["name"], {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}.get(t, t), c["mode"],
                    c.get("description", "")))  # fmt: skip
    return out


def assert_parity(doc: dict[str, Any], cat: Catalog) -> None:
    tiers = [t.name for t in cat.tiers]

    topics = {t["name"] for t in planned(doc, "google_pubsub_topic")}
    assert topics == {cat.topic(t) for t in tiers} | {cat.dead_letter_topic(t) for t in tiers}

    subs = {s["name"]: s for s in planned(doc, "google_pubsub_subscription")}
    assert set(subs) == {cat.subscription(t) for t in tiers} | {cat.dead_letter_subscription(t) for t in tiers}
    for tier in cat.tiers:
        sub = subs[cat.subscription(tier.name)]
        assert sub["ack_deadline_seconds"] == tier.ack_deadline_seconds
        assert sub["message_retention_duration"] == f"{tier.message_retention_seconds}s"
        assert sub["dead_letter_policy"][0]["max_delivery_attempts"] == tier.max_delivery_attempts
        assert sub["enable_exactly_once_delivery"] is True

    outputs = {k: v.get("value") for k, v in doc["planned_values"]["outputs"].items()}
    assert outputs["topics"] == {t: cat.topic(t) for t in tiers}
    assert outputs["subscriptions"] == {t: cat.subscription(t) for t in tiers}
    assert outputs["dead_letter_topics"] == {t: cat.dead_letter_topic(t) for t in tiers}
    assert outputs["dataset"] == cat.dataset
    assert outputs["tables"] == {c.name: c.name for c in cat.categories}

    (dataset,) = planned(doc, "google_bigquery_dataset")
    assert dataset["dataset_id"] == cat.dataset

    tables = {t["table_id"]: t for t in planned(doc, "google_bigquery_table")}
    committed = {names.committed_table(c.name): c for c in cat.categories}
    fresh = {names.fresh_table(t) for t in {c.tier for c in cat.categories}}
    assert set(tables) == set(committed) | fresh
    for table_id, c in committed.items():
        t = tables[table_id]
        assert t["dataset_id"] == cat.dataset
        assert tf_columns(t["schema"]) == columns(category_schema(c)), table_id
        assert t["clustering"] == list(c.clustering)
        (part,) = t["time_partitioning"]
        assert (part["type"], part["field"]) == ("DAY", "event_time")
        expected = c.partition_expiration_days * DAY_MS if c.partition_expiration_days else None
        assert part.get("expiration_ms") == expected, table_id
    for table_id in fresh:
        t = tables[table_id]
        assert tf_columns(t["schema"]) == columns(fresh_schema()), table_id
        assert t["clustering"] == ["category", "event_id"]
        assert t["time_partitioning"][0]["expiration_ms"] == fresh_expiration_days(DEFAULT_HORIZON_HOURS) * DAY_MS

    deployments = {d["metadata"][0]["name"]: d for d in planned(doc, "kubernetes_deployment_v1")}
    for tier in tiers:
        args = deployments[f"logpipe-replicator-{tier}"]["spec"][0]["template"][0]["spec"][0]["container"][0]["args"]
        assert args[-2:] == ["--tier", tier]
        loader = deployments[f"logpipe-loader-{tier}"]["spec"][0]["template"][0]["spec"][0]["container"][0]["args"]
        assert loader[loader.index("--horizon-hours") + 1] == str(DEFAULT_HORIZON_HOURS)


def test_shipped_catalog(fake_tf: tf_harness.FakeProviders, tmp_path: Path) -> None:
    assert_parity(plan(fake_tf, tmp_path, None), load_catalog(tf_harness.TERRAFORM_DIR / "catalog.yaml"))


def test_another_catalog_with_defaults_left_out(fake_tf: tf_harness.FakeProviders, tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(OTHER_CATALOG)
    cat = load_catalog(path)
    assert cat.name_prefix == "acme" and cat.tier("cold").max_delivery_attempts == 100  # defaults really omitted
    assert_parity(plan(fake_tf, tmp_path, path), cat)
