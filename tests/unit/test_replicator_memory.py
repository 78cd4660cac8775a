"""Finalizer memory does not grow with the partition: rows are streamed into the encoder, files are written as they
fill, and only the event_id set grows (about 100 bytes per event)."""

from __future__ import annotations

import datetime as dt
import random
import tracemalloc
from collections.abc import Mapping

import pytest

from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.store import Created, MemoryStore, crc32c_b64
from replicator.synth import random_payload_envelope
from service import envelope as envelope_format
from service.catalog import load_catalog

pytestmark = pytest.mark.unit
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)


class DiscardingStore(MemoryStore):
    """Keeps staging objects and manifests; data files are checksummed and dropped, so they do not count as memory."""

    def create_if_absent(
        self, name: str, data: bytes, metadata: Mapping[str, str] | None = None, content_type: str | None = None
    ) -> Created:
        if "/part-g" in name:
            return Created(True, crc32c_b64(data), len(data))
        return super().create_if_absent(name, data, metadata, content_type)


def peak_finalizing(envelopes: int) -> tuple[int, int]:
    store, metrics = DiscardingStore(), Metrics()
    lander = Lander(store, ["app_log"], metrics)
    rng = random.Random(envelopes)
    for _ in range(envelopes):
        e = random_payload_envelope(rng, "app_log", 200, H, 1024)
        lander.land(e.data, e.attributes)
    fin = Finalizer(store, load_catalog(), metrics, FinalizeSettings(target_file_bytes=256 * 1024))
    tracemalloc.start()
    try:
        [m] = fin.finalize_partition(Partition("app_log", H))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, m.total_events


def test_finalizer_peak_memory_is_independent_of_partition_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # service.envelope.parse reads through a buffer of max_uncompressed + 1 bytes (256 MiB by default): virtual
    # memory that is never touched, but tracemalloc counts it. A 4 MiB cap keeps the measurement about rows.
    real_parse = envelope_format.parse
    monkeypatch.setattr(envelope_format, "parse", lambda d, a: real_parse(d, a, max_uncompressed=4 << 20))
    small_peak, small_events = peak_finalizing(10)
    big_peak, big_events = peak_finalizing(100)  # 20000 events of ~1 KiB: ~20 MiB of payload alone
    assert (small_events, big_events) == (2000, 20000)
    raw_rows = big_events * 1024
    # Holding the rows would cost > raw_rows; streaming costs one file + one staging object + the id set.
    assert big_peak < raw_rows / 2, (small_peak, big_peak)
    assert big_peak - small_peak < 18000 * 200, (small_peak, big_peak)  # growth: ~ the id set only
