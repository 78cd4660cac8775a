"""The TOKEN of data file names covers everything the files' bytes depend on (generation.generation_token).

A finalizer killed between its data files and its manifest (step F3) leaves ``part-gNNNN-<TOKEN>-*`` behind. A rerun
reuses them only if it computes the same TOKEN *and* the same bytes; a rerun whose bytes differ (a schema evolution
during a rolling upgrade, another target size, another format) must use other names, or it would hit
``ConflictingDataFile`` on every pass and the partition would never commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from replicator import files
from replicator.crash import CrashPoints
from replicator.finalize import Finalizer, FinalizeSettings
from replicator.generation import generation_token
from replicator.landing import Lander
from replicator.layout import Partition
from replicator.metrics import Metrics
from replicator.records import decode_rows
from replicator.scan import list_manifests, read_partition
from replicator.store import MemoryStore
from replicator.synth import make_envelope, random_payload_envelope
from service import envelope as envelope_format
from service.catalog import Catalog, Category, FieldType, FileFormat, PayloadField, PayloadFormat, load_catalog
from service.contract import Envelope, Event

pytestmark = pytest.mark.unit

CAT = load_catalog()
H = dt.datetime(2026, 11, 26, 13, tzinfo=dt.UTC)
P = Partition("ads_click", H)
SOURCES = ("staging/ads_click/2026/11/26/13/a.pb.zst", "staging/ads_click/2026/11/26/13/b.pb.zst")


class _Killed(Exception):
    """Stands in for SIGKILL at a crash point (the real ``CrashPoints`` ends the process)."""


class _KillAt(CrashPoints):
    def point(self, step: str) -> None:
        if step == self.step:
            raise _Killed(step)


def _with_field(catalog: Catalog, category: str, new: PayloadField) -> Catalog:
    """``catalog`` after the documented schema evolution: one NULLABLE field appended to ``category``."""
    cats = tuple(
        c.model_copy(update={"fields": (*c.fields, new)}) if c.name == category else c for c in catalog.categories
    )
    return catalog.model_copy(update={"categories": cats})


def _committed_ids(store: MemoryStore, category: Category) -> list[str]:
    return [
        r["event_id"]
        for _, m in list_manifests(store, [category.name])
        for f in m.files
        for r in decode_rows(store.read(f.name), category)
    ]


def test_schema_change_after_a_crash_before_the_manifest_commits_every_event_once() -> None:
    store, metrics = MemoryStore(), Metrics()
    lander = Lander(store, [c.name for c in CAT.categories], metrics)
    for k in range(3):
        e = make_envelope("ads_click", [f"e{k}-{i}" for i in range(200)], H + dt.timedelta(minutes=5))
        lander.land(e.data, e.attributes)
    kill = _KillAt("finalize.after_data_file")
    old = Finalizer(store, CAT, metrics, FinalizeSettings(target_file_bytes=1000, writer="old"), crash=kill)
    with pytest.raises(_Killed):
        old.finalize_partition(P)  # the old version dies after its first data file of generation 1
    stale = [o.name for o in read_partition(store, P).data_files]
    assert len(stale) == 1 and read_partition(store, P).manifests == ()

    new_catalog = _with_field(CAT, "ads_click", PayloadField(name="zz_new", type=FieldType.STRING))
    new = Finalizer(store, new_catalog, Metrics(), FinalizeSettings(target_file_bytes=1000, writer="new"))
    [m] = new.finalize_partition(P)  # before the fix: ConflictingDataFile on every pass

    category = new_catalog.category("ads_click")
    assert m.generation == 1 and m.writer == "new"
    assert stale[0] not in m.file_names
    ids = _committed_ids(store, category)
    assert sorted(ids) == sorted(f"e{k}-{i}" for k in range(3) for i in range(200))  # all, exactly once
    assert all("zz_new" in r for f in m.files for r in decode_rows(store.read(f.name), category))
    assert stale[0] not in store.names()  # generation 1 is committed: the stale part file is an orphan, collected
    assert {o.name for o in read_partition(store, P).data_files} == set(m.file_names)
    assert new.finalize_partition(P) == []


def test_token_is_stable_for_equal_inputs_and_ignores_source_order() -> None:
    c = CAT.category("ads_click")
    token = generation_token(1, SOURCES, c, 1000)
    assert len(token) == 16 and int(token, 16) >= 0
    assert generation_token(1, reversed(SOURCES), c, 1000) == token
    assert generation_token(1, list(SOURCES), load_catalog().category("ads_click"), 1000) == token


def test_token_changes_with_everything_that_changes_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    c = CAT.category("ads_click")
    base = generation_token(1, SOURCES, c, 1000)
    added = _with_field(CAT, "ads_click", PayloadField(name="zz_new", type=FieldType.STRING)).category("ads_click")
    retyped = c.model_copy(
        update={
            "fields": tuple(
                f.model_copy(update={"type": FieldType.INT64}) if f.name == "user_id" else f for f in c.fields
            )
        }
    )
    span = CAT.category("trace_span")
    variants = {
        "generation": generation_token(2, SOURCES, c, 1000),
        "sources": generation_token(1, SOURCES[:1], c, 1000),
        "format": generation_token(1, SOURCES, c.model_copy(update={"file_format": FileFormat.JSONL_GZ}), 1000),
        "added field": generation_token(1, SOURCES, added, 1000),
        "field type": generation_token(1, SOURCES, retyped, 1000),
        "target size": generation_token(1, SOURCES, c, 1001),
    }
    assert base not in variants.values() and len(set(variants.values())) == len(variants)
    payload = generation_token(1, SOURCES, span.model_copy(update={"payload_format": PayloadFormat.JSON}), 1000)
    assert payload != generation_token(1, SOURCES, span, 1000)
    monkeypatch.setattr(files, "ENCODING_VERSION", files.ENCODING_VERSION + 1)
    assert generation_token(1, SOURCES, c, 1000) != base


def _envelopes(category: str) -> list[envelope_format.EncodedEnvelope]:
    """Fixed envelopes (fixed ids), some events with attributes, and one event id repeated across envelopes."""
    out = []
    for k in range(3):
        e = make_envelope(
            category, [f"{k}-{i}" for i in range(120)] + ["dup"], H, f"00000000-0000-0000-0000-00000000000{k}"
        )
        env = envelope_format.decode(e.data, e.attributes)
        extra = Event(event_id=f"attr-{k}", category=category, payload=b'{"user_id": "u1", "success": true}')
        extra.event_time.FromDatetime(H.replace(tzinfo=None))
        for key in ("zeta", "alpha", f"k{k}", "mid"):
            extra.attributes[key] = key.upper()
        out_env = Envelope()
        out_env.CopyFrom(env)
        out_env.events.append(extra)
        out.append(envelope_format.encode(out_env))
    out.append(random_payload_envelope(random.Random(7), category, 200, H, 1000))  # poorly compressible: several files
    return out


def finalized_file_digest() -> str:
    """SHA-256 over (name, bytes) of every data file finalized from ``_envelopes`` for every category."""
    h = hashlib.sha256()
    for c in CAT.categories:
        store = MemoryStore()
        lander = Lander(store, [c.name], Metrics())
        for e in _envelopes(c.name):
            lander.land(e.data, e.attributes)
        Finalizer(store, CAT, Metrics(), FinalizeSettings(target_file_bytes=4000)).finalize_partition(
            Partition(c.name, H)
        )
        for name in store.names():
            if "/part-g" in name:
                h.update(name.encode() + b"\n" + store.read(name))
    return h.hexdigest()


def test_same_inputs_give_byte_identical_files_in_every_format() -> None:
    runs = []
    for _ in range(2):
        stores = {}
        for c in CAT.categories:
            store = MemoryStore()
            lander = Lander(store, [c.name], Metrics())
            for e in _envelopes(c.name):
                lander.land(e.data, e.attributes)
            ms = Finalizer(store, CAT, Metrics(), FinalizeSettings(target_file_bytes=4000)).finalize_partition(
                Partition(c.name, H)
            )  # one manifest per shard (trace_span's finalize_shards)
            assert len(ms) == c.finalize_shards and sum(m.duplicates_dropped for m in ms) == 2
            assert sum(len(m.files) for m in ms) > 1
            stores[c.name] = {f.name: store.read(f.name) for m in ms for f in m.files}
        runs.append(stores)
    assert runs[0] == runs[1]
    assert {c.file_format for c in CAT.categories} == {FileFormat.AVRO, FileFormat.JSONL_GZ}


def test_file_bytes_do_not_depend_on_the_process_hash_seed() -> None:
    """Set and dict iteration order varies per process (PYTHONHASHSEED); the bytes must not."""
    here = Path(__file__).parent
    code = (
        f"import sys; sys.path.insert(0, {str(here)!r}); "
        "import test_finalize_token as t; print(t.finalized_file_digest())"
    )
    digests = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        run = [sys.executable, "-c", code]
        out = subprocess.run(run, cwd=here.parents[1], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert digests == {finalized_file_digest()}
