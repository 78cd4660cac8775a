"""Committed path: load each manifest generation of a tier's categories into ``<category>__committed``, once.

One pass (``CommittedLoader.run``), in numbered steps; a crash after any step is repaired by the next pass:
  C1. List the manifests of the lookback window (``logs/<category>/YYYY/MM/DD/``), read the new ones (immutable, so
      cached), and skip those with a ``.loaded`` marker.
  C2. Load each remaining manifest's files with ``LoadRunner`` (job id from category, hour, generation, token). A
      repeat after a crash answers 409 and is recognised as done: the committed table gets each generation once.
  C3. Delete the fresh rows the loaded manifests cover (``DELETE ... WHERE source IN UNNEST(@sources)``: one DML
      per pass and tier). Only an optimisation: the view already prefers committed rows; this keeps the fresh table
      (and so every query of the view) small. Idempotent.
  C4. Write the ``.loaded`` markers (create-if-absent). They only save work: a lost marker costs one 409.
A manifest without files (a delta whose events were all duplicates) has nothing to load and goes straight to C3.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from google.cloud import bigquery

from replicator.bigquery import names
from replicator.bigquery.errors import LoadFailed, LoadPending
from replicator.bigquery.jobs import LoadRunner, LoadSpec
from replicator.bigquery.metrics import LoaderMetrics
from replicator.crash import NEVER, CrashPoints
from replicator.errors import ObjectNotFound
from replicator.layout import Layout, Partition, manifest_generation
from replicator.manifest import Manifest, ManifestError
from replicator.store import ObjectStore
from service.catalog import Category, FileFormat

log = logging.getLogger(__name__)
_FORMATS = {FileFormat.AVRO: "AVRO", FileFormat.JSONL_GZ: "NEWLINE_DELIMITED_JSON"}
_DELETE_CHUNK = 10_000


def days_between(start: dt.datetime, end: dt.datetime) -> Iterator[dt.date]:
    """Every UTC date from ``start`` to ``end`` inclusive."""
    d, last = start.astimezone(dt.UTC).date(), end.astimezone(dt.UTC).date()
    while d <= last:
        yield d
        d += dt.timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a tier loads: ``project.dataset``, the bucket, and the job-id prefix."""

    project: str
    dataset: str
    bucket: str
    job_prefix: str = "logpipe"

    def table(self, name: str) -> str:
        return f"{self.project}.{self.dataset}.{name}"


class CommittedLoader:
    """The committed path of one tier. Not thread-safe: one pass at a time per instance. No I/O in the constructor."""

    def __init__(
        self,
        *,
        store: ObjectStore,
        client: bigquery.Client,
        runner: LoadRunner,
        metrics: LoaderMetrics,
        target: Target,
        tier: str,
        categories: tuple[Category, ...],
        lookback: dt.timedelta,
        clock: Callable[[], dt.datetime],
        layout: Layout | None = None,
        crash: CrashPoints = NEVER,
    ) -> None:
        self._store, self._client, self._runner, self._metrics = store, client, runner, metrics
        self._target, self._tier, self._categories = target, tier, categories
        self._lookback, self._clock, self._crash = lookback, clock, crash
        self._layout = layout or Layout()
        self._manifests: dict[str, Manifest] = {}
        self._done: set[str] = set()
        self._failed: set[str] = set()
        self._marker_days: set[tuple[str, dt.date]] = set()

    @property
    def committed_sources(self) -> frozenset[str]:
        """Staging objects consumed by any known manifest: the fresh path leaves these alone."""
        return frozenset(s for m in self._manifests.values() for s in m.sources)

    @property
    def done_sources(self) -> frozenset[str]:
        """Staging objects whose manifest is loaded and whose fresh rows are deleted."""
        return frozenset(s for m in self._manifests.values() if self._marker(m) in self._done for s in m.sources)

    def _discover(self) -> list[tuple[str, Manifest]]:
        now = self._clock()
        for c in self._categories:
            for day in days_between(now - self._lookback, now + dt.timedelta(hours=1)):
                day_path = f"{c.name}/{day:%Y/%m/%d}/"
                if (c.name, day) not in self._marker_days:
                    for info in self._store.list(f"{names.committed_marker_dir(c.name)}{day:%Y/%m/%d}/"):
                        self._done.add(info.name)
                    self._marker_days.add((c.name, day))
                for info in self._store.list(f"{self._layout.logs_prefix}/{day_path}"):
                    if info.name in self._manifests or manifest_generation(info.name) is None:
                        continue
                    try:
                        self._manifests[info.name] = Manifest.from_json(self._store.read(info.name))
                    except (ManifestError, ObjectNotFound) as exc:
                        log.error("skipping unreadable manifest %s: %s", info.name, exc)
        return [
            (n, m)
            for n, m in sorted(self._manifests.items())
            if self._marker(m) not in self._done and n not in self._failed
        ]

    def _marker(self, m: Manifest) -> str:
        return names.committed_marker(Partition(m.category, m.partition_hour), m.generation)

    def run(self) -> int:
        """One pass (C1-C4). Returns how many manifests it finished. Raises only on object-store errors."""
        todo = self._discover()
        by_name = {c.name: c for c in self._categories}
        loaded: list[Manifest] = []
        pending = 0
        for name, m in todo:
            category = by_name[m.category]
            p = Partition(m.category, m.partition_hour)
            spec = LoadSpec(
                kind="commit",
                job_base=names.commit_job_base(self._target.job_prefix, self._target.dataset, p, m.generation, m.token),
                uris=tuple(f"gs://{self._target.bucket}/{f.name}" for f in m.files),
                table=self._target.table(names.committed_table(m.category)),
                source_format=_FORMATS[category.file_format],
                allow_field_addition=True,
            )
            if spec.uris:
                try:
                    self._runner.load(spec)
                except LoadPending as exc:
                    log.warning("commit load pending: %s", exc)
                    pending += 1
                    continue
                except LoadFailed:
                    self._failed.add(name)
                    continue
            self._crash.point("bq.commit.after_load")
            loaded.append(m)
        self._metrics.pending.labels("commit").set(pending)
        if not loaded:
            return 0
        try:
            self._delete_fresh(sorted({s for m in loaded for s in m.sources}))
        except Exception as exc:  # retried next pass: the loads above will answer 409
            log.warning("deleting committed fresh rows failed, retrying next pass: %r", exc)
            return 0
        self._crash.point("bq.commit.after_delete")
        now = self._clock()
        for m in loaded:
            self._store.create_if_absent(self._marker(m), b"", content_type="text/plain")
            self._done.add(self._marker(m))
            created = dt.datetime.fromisoformat(m.created.replace("Z", "+00:00"))
            self._metrics.commit_latency.observe(max(0.0, (now - created).total_seconds()))
        return len(loaded)

    def _delete_fresh(self, sources: list[str]) -> None:
        table = self._target.table(names.fresh_table(self._tier))
        for i in range(0, len(sources), _DELETE_CHUNK):
            chunk = sources[i : i + _DELETE_CHUNK]
            cfg = bigquery.QueryJobConfig(query_parameters=[bigquery.ArrayQueryParameter("sources", "STRING", chunk)])
            self._client.query(f"DELETE FROM `{table}` WHERE source IN UNNEST(@sources)", job_config=cfg).result()
