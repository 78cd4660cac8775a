"""Shared helpers (no tests) of the BigQuery integration tests: an isolated bucket and dataset on the session's
local cloud. Named ``test_bigquery_*`` to stay inside the BigQuery test files."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any

from replicator.bigquery import names
from replicator.bigquery.loader import Loader, LoaderConfig
from replicator.bigquery.metrics import LoaderMetrics
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.store_gcs import GcsStore
from replicator.synth import make_envelope
from service.catalog import Catalog, load_catalog
from service.local.clients import bigquery_client, storage_client
from service.local.endpoints import Endpoints

INTERVAL = 0.5  # fresh slot length in these tests (production: 60 s)


@dataclass
class BqEnv:
    """One test's world: its own bucket and dataset, so tests sharing the session's stack never see each other."""

    endpoints: Endpoints
    catalog: Catalog
    bucket: str
    dataset: str
    bq: Any
    store: GcsStore
    lander: Lander
    finalizer: Finalizer

    def config(self, **overrides: Any) -> LoaderConfig:
        base: dict[str, Any] = dict(
            project=self.endpoints.project,
            bucket=self.bucket,
            dataset=self.dataset,
            bigquery_url=self.endpoints.bigquery_url,
            gcs_url=self.endpoints.gcs_url,
            interval_seconds=INTERVAL,
            job_wait_seconds=60.0,
        )
        base.update(overrides)
        return LoaderConfig(**base)

    def loader(self, metrics: LoaderMetrics | None = None, **overrides: Any) -> Loader:
        return Loader(self.config(**overrides), self.catalog, self.bq, self.store, metrics)

    def run(self, loader: Loader) -> tuple[int, int]:
        """One pass of ``loader`` once everything landed so far is in a closed fresh slot."""
        time.sleep(INTERVAL * 1.5 + 0.1)
        return loader.run_once()

    def land(self, category: str, ids: list[str], when: dt.datetime, envelope_id: str | None = None) -> str:
        enc = make_envelope(category, ids, when, envelope_id)
        self.lander.land(enc.data, enc.attributes)
        return enc.envelope_id

    def commit(self, category: str, when: dt.datetime) -> int:
        """Finalize the partition of ``when``; returns the number of new manifests."""
        return len(self.finalizer.finalize_partition(Partition.of(category, when)))

    def cli_args(self) -> list[str]:
        ep = self.endpoints
        return [
            "load", "--once", "--bucket", self.bucket, "--dataset", self.dataset, "--project", ep.project,
            "--bigquery-url", ep.bigquery_url, "--gcs-url", ep.gcs_url, "--interval", str(INTERVAL),
        ]  # fmt: skip

    def counts(self, table: str) -> tuple[int, int]:
        """(COUNT(*), COUNT(DISTINCT event_id)) of ``<dataset>.<table>``."""
        ref = f"`{self.endpoints.project}.{self.dataset}.{table}`"
        sql = f"SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM {ref}"
        row = next(iter(self.bq.query(sql).result()))
        return int(row["n"]), int(row["d"])

    def fresh_count(self, tier: str) -> int:
        sql = f"SELECT COUNT(*) AS n FROM `{self.endpoints.project}.{self.dataset}.{names.fresh_table(tier)}`"
        return int(next(iter(self.bq.query(sql).result()))["n"])


def make_env(endpoints: Endpoints) -> BqEnv:
    catalog = load_catalog()
    suffix = uuid.uuid4().hex[:10]
    bucket, dataset = f"bqtest-{suffix}", f"bqtest_{suffix}"
    gcs = storage_client(endpoints)
    gcs.create_bucket(bucket)
    store = GcsStore(gcs, bucket)
    metrics = Metrics()
    lander = Lander(store, [c.name for c in catalog.categories], metrics)
    finalizer = Finalizer(store, catalog, metrics, FinalizeSettings(writer="test"))
    bq = bigquery_client(endpoints)
    return BqEnv(endpoints, catalog, bucket, dataset, bq, store, lander, finalizer)


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:05d}-{uuid.uuid4().hex[:8]}" for i in range(n)]
