"""The fresh path's conversion: one Avro file per staging object, ``bq/fresh/<tier>/objects/<staging name>.avro``.

Conversion runs ahead of loading (``FreshLoader.convert``, every few seconds), so a pass, right after its time slot
closed, only has to load. The file's name derives from the staging object and is created if absent, so workers and
restarts converge on one file. ``Converter`` remembers which objects have their file, and, for the rows it wrote
itself, their ingest and landing times until their load (the latency metrics; bounded: G4).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping

from replicator.bigquery import fresh_rows, names
from replicator.bigquery.hours import CompleteHours, is_complete
from replicator.bigquery.metrics import LoaderMetrics
from replicator.errors import ObjectNotFound
from replicator.landed import decode_landed
from replicator.layout import Layout
from replicator.readahead import ordered_map
from replicator.store import ObjectInfo, ObjectStore
from service import envelope as envelope_format
from service.catalog import Category
from service.client.ids import uuid7_lower_bound

log = logging.getLogger(__name__)
_READERS = 8
_EXISTS = object()
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_TRACKED = 20_000  # staging objects whose latency is tracked until their load (bounded memory)


def recent_staging(
    store: ObjectStore,
    by_name: Mapping[str, Category],
    layout: Layout,
    now: dt.datetime,
    lookback: dt.timedelta | None,
    complete: CompleteHours,
) -> Iterator[ObjectInfo]:
    """The staging objects of the current and the previous hour of each category, unless known complete; each hour
    listed from the UUIDv7 start offset of ``now - lookback`` (whole hours for None: fresh.py's module docstring)."""
    since = "" if lookback is None else uuid7_lower_bound(now - lookback)
    for name in by_name:
        for hour in (now - dt.timedelta(hours=1), now):
            if not is_complete(complete, name, hour):
                prefix = f"{layout.staging_prefix}/{name}/{hour:%Y/%m/%d/%H}/"
                yield from store.list(prefix, start_offset=prefix + since if since else "")


class Converter:
    """Converts the staging objects of one tier's categories. Not thread-safe. No I/O in the constructor."""

    def __init__(self, store: ObjectStore, tier: str, by_name: Mapping[str, Category]) -> None:
        self._store, self._tier, self._by_name = store, tier, by_name
        self.converted: set[str] = set()  # staging names whose Avro file exists
        # staging name -> (ingest times in µs, landing time) of rows converted here, for the latency metrics
        self.latency: dict[str, tuple[list[int], dt.datetime]] = {}

    def forget(self, src: str) -> None:
        self.converted.discard(src)
        self.latency.pop(src, None)

    def observe(self, sources: Iterable[str], metrics: LoaderMetrics, now: dt.datetime) -> int:
        """Record the latency of the rows of ``sources`` this converter wrote, now queryable; returns their number
        (objects converted elsewhere are not counted)."""
        now_us = (now - _EPOCH) / dt.timedelta(microseconds=1)
        events = 0
        for src in sources:
            if src not in self.latency:
                continue
            ingest_us, landed = self.latency.pop(src)
            lat = [max(0.0, (now_us - us) / 1e6) for us in ingest_us]
            metrics.ingest_to_queryable.extend(lat)
            for v in lat:
                metrics.fresh_latency.labels("ingest").observe(v)
            landed_s = max(0.0, (now - landed).total_seconds())
            metrics.landed_to_queryable.extend([landed_s] * len(lat))
            metrics.fresh_latency.labels("landed").observe(landed_s)
            events += len(lat)
        return events

    def convert(self, sources: list[str], known: Mapping[str, ObjectInfo]) -> int:
        """Write the Avro file of each staging object that has none yet; returns how many this call wrote. An object
        that is gone was consumed by a commit (the committed table has its events) and is skipped."""
        # Reads are I/O-bound: overlap them, holding at most a window of objects in memory (G4).
        fetched = ordered_map(lambda src: self._fetch(src, known.get(src)), sources, threads=_READERS)
        done = 0
        for src, got in zip(sources, fetched, strict=True):
            if got is None:
                continue
            if isinstance(got, tuple):
                info, data = got
                try:
                    env = decode_landed(data, info.metadata)  # as finalization reads it
                except envelope_format.PoisonEnvelope as exc:  # landing validated it; never block the tier on one
                    log.error("skipping undecodable staging object %s: %s", src, exc)
                    continue
                rows = list(fresh_rows.fresh_rows(env, self._by_name[env.category], src))
                name = names.fresh_object(self._tier, src)
                self._store.create_if_absent(name, fresh_rows.encode(rows), content_type="avro/binary")
                if len(self.latency) < _MAX_TRACKED:  # G4: while loads are pending, stop tracking, keep converting
                    self.latency[src] = ([int(r["ingest_time"] or r["event_time"]) for r in rows], info.updated)
                done += 1
            self.converted.add(src)
        return done

    def _fetch(self, src: str, info: ObjectInfo | None) -> tuple[ObjectInfo, bytes] | object | None:
        """``_EXISTS`` when the Avro file is there already (another worker, an earlier process); else the staging
        object and its bytes; None when the staging object is gone (a commit consumed it)."""
        if self._store.stat(names.fresh_object(self._tier, src)) is not None:
            return _EXISTS
        try:
            info = info or self._store.stat(src)
            return (info, self._store.read(src)) if info is not None else None
        except ObjectNotFound:
            return None
