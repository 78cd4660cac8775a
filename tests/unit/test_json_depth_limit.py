"""BigQuery's JSON type refuses values nested deeper than 500 levels, and one such row fails a whole load job (every
event of the generation or fresh batch). So the front-end refuses such a payload per event (``INVALID_JSON``, both the
C fast path and the Python path), and an event that landed before that check (``event_to_row``) is rejected on its
own as ``payload_too_deep``: quarantined by the finalizer, skipped by the fresh path; its neighbours are committed."""

from __future__ import annotations

import json
import time

import pytest

from replicator import records
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.landing import Lander
from replicator.metrics import Metrics
from replicator.store import MemoryStore
from replicator.synth import make_event
from service import envelope as envelope_format
from service.contract import Envelope, PublishRequest, StatusCode
from service.frontend.config import FrontendConfig
from service.frontend.fastpath import WireScanner
from service.frontend.validate import Limits, Validator, json_problem
from tests.unit.frontend_support import CATALOG as CATALOG_FE
from tests.unit.frontend_support import event as fe_event
from tests.unit.test_bigquery_committed import CAT, NOW, P

pytestmark = pytest.mark.unit
BIGQUERY_JSON_NESTING_LIMIT = 500


def _depth(value: object) -> int:
    depth, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, list | dict):
            depth = max(depth, d)
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return depth


def test_no_committed_row_carries_json_deeper_than_bigquery_accepts() -> None:
    deep = b"[" * 600 + b"]" * 600  # as if accepted by an earlier front-end
    store = MemoryStore(clock=lambda: NOW)
    lander = Lander(store, [c.name for c in CAT.categories], Metrics())
    env = Envelope(envelope_id="0190f0f0-0000-7000-8000-000000000001", category="ads_click", frontend="test")
    env.events.extend(make_event("ads_click", f"ok-{i}", NOW, seq=i) for i in range(3))
    bad = make_event("ads_click", "deep-1", NOW, seq=3)
    bad.payload = deep
    env.events.append(bad)
    enc = envelope_format.encode(env)
    lander.land(enc.data, enc.attributes)  # landing accepts it too
    fin = Finalizer(store, CAT, Metrics(), FinalizeSettings(writer="test"), clock=lambda: NOW)
    (m,) = fin.finalize_partition(P)
    deepest = 0
    for f in m.files:
        for row in records.decode_rows(store.read(f.name), CAT.category("ads_click")):
            payload = row["payload"]
            deepest = max(deepest, _depth(json.loads(payload) if isinstance(payload, str) else payload))
    assert deepest <= BIGQUERY_JSON_NESTING_LIMIT, (
        f"generation 1's file holds a JSON payload {deepest} levels deep: BigQuery refuses the whole load job, and "
        "LoadRunner gives up every event of the generation"
    )


@pytest.mark.parametrize(
    ("payload", "ok"),
    [
        (b"[" * 500 + b"]" * 500, True),
        (b"[" * 501 + b"]" * 501, False),
        (b'{"a":' * 501 + b"1" + b"}" * 501, False),
        (b'["' + b"[" * 2000 + b'"]', True),  # brackets inside a string do not nest
        (b'["\\\\",' + b"[" * 500 + b"]" * 500 + b"]", False),  # an escaped backslash: the string ends there
        (b'["\\"' + b"[" * 600 + b'"]', True),  # an escaped quote: the brackets are still in the string
    ],
)
def test_the_front_end_refuses_deeper_than_500_levels_per_event(payload: bytes, ok: bool) -> None:
    assert (json_problem(payload) is None) is ok
    now = time.time()
    v = Validator(CATALOG_FE, Limits.from_config(FrontendConfig()))
    good, e = fe_event(), fe_event(payload=payload)
    raw = [x.SerializeToString() for x in (good, e)]
    for checked in (v.check([good, e], now, "c"), v.check([good, e], now, "c", raw)):
        assert [(r.index, r.code) for r in checked.rejections] == ([] if ok else [(1, StatusCode.INVALID_JSON)])
    scanner = WireScanner(CATALOG_FE, Limits.from_config(FrontendConfig()), 10_000)
    if scanner.available():  # the C fast path accepts the request only when nothing is too deep
        scanned = scanner.scan(PublishRequest(events=[good, e]).SerializeToString(), now, "c")
        assert (scanned is not None) is ok


def test_event_to_row_rejects_a_too_deep_payload_on_its_own() -> None:
    e = make_event("ads_click", "deep-1", NOW, seq=1)
    e.payload = b"[" * 501 + b"]" * 501
    with pytest.raises(records.UnconvertibleEvent) as info:
        records.event_to_row(e, CAT.category("ads_click"), "env-1")
    assert info.value.reason == "payload_too_deep"
    e.payload = b"[" * 500 + b"]" * 500
    assert records.event_to_row(e, CAT.category("ads_click"), "env-1")["payload"] == e.payload.decode()
