"""One tier's failed pass does not hold back the others: ``Loader.run_once`` runs every tier's passes, then raises the
first failure (the loop logs it and retries the failed tier at the next interval)."""

from __future__ import annotations

import datetime as dt

import pytest

from replicator.bigquery import names
from replicator.bigquery.loader import Loader, LoaderConfig
from replicator.errors import StoreError
from replicator.synth import make_envelope
from tests.unit.test_bigquery_committed import CAT
from tests.unit.test_bigquery_fresh_hours import OPEN, world

pytestmark = pytest.mark.unit


def test_a_tier_whose_pass_fails_does_not_stop_the_next_tier() -> None:
    w = world(0)
    enc = make_envelope("app_log", ["bulk-1"], OPEN + dt.timedelta(minutes=1))
    bulk = w.lander.land(enc.data, enc.attributes).names[0]
    w.clock.now += dt.timedelta(minutes=2)
    cfg = LoaderConfig(project="p", bucket="b", dataset="ds", tiers=("core", "bulk"), fresh_convert_lookback_seconds=0)
    loader = Loader(cfg, CAT, w.client, w.store, clock=w.clock)
    for committed, fresh in loader._passes:
        committed._runner = fresh._runner = w.runner  # type: ignore[assignment]
    (core_committed, _), _ = loader._passes

    def broken() -> int:
        raise StoreError("list", "logs/ads_click/", "the core tier's listing failed", transient=True)

    core_committed.run = broken  # type: ignore[method-assign]
    with pytest.raises(StoreError, match="core tier"):
        loader.run_once()
    bulk_uri = f"gs://b/{names.fresh_object('bulk', bulk)}"
    assert bulk_uri in w.fresh_uris(), "the bulk tier's fresh pass ran despite the core tier's failure"
