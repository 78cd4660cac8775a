"""C3 never hides an event committed only by an earlier generation that is not loaded yet, in an unsharded partition
as in a shard's (committed.py, C3).

The generations of a partition load independently (a pending generation 1 does not hold back generation 2), and a
generation without files (a delta whose events were all duplicates) goes straight to C3. So a source a loaded
manifest lists may hold an event that only an earlier, unloaded generation commits; its fresh row is then the
event's only row in the view. C3 deletes only the fresh rows whose event is in the committed table (``event_id IN
(SELECT event_id FROM <committed> ...)``, ``fresh_delete_sql``), never by source alone, so the event stays visible
through the fresh table until the earlier generation loads (and until the horizon if that load is given up: the
events of a given-up load stay visible through the fresh path, docs/bigquery.md "Metrics and failures").

The interleaving (one loader, one unsharded partition):
  1. Envelope S1 {k-001, k-002} lands; the finalizer commits generation 1 (S1) before any fresh pass batched S1,
     and dies before ``_SUCCESS`` (crash point ``finalize.after_manifest``), so the hour is still open.
  2. Loader pass: generation 1's load is pending (job still RUNNING past ``job_wait_seconds``, or a 403 quota); the
     fresh path skips S1 (``committed_sources``).
  3. The client's retry of k-001 reached another front-end: envelope S2 {k-001} lands. Loader pass: the fresh path
     loads S2, so k-001 is visible (through the fresh table).
  4. The finalizer's next pass commits generation 2 over S2 (k-001 is a duplicate of generation 1: no files) and
     writes ``_SUCCESS``.
  5. Loader pass: generation 1 still pending; generation 2 has nothing to load and goes to C3, which must keep S2's
     fresh row of k-001: k-001 is not in the committed table yet.
"""

from __future__ import annotations

import datetime as dt

import pytest

from replicator.bigquery import names
from replicator.bigquery.committed import fresh_delete_sql
from replicator.layout import Layout
from tests.unit.test_bigquery_shards import TARGET, P, World

pytestmark = pytest.mark.unit


def test_c3_of_a_later_generation_does_not_hide_an_event_committed_by_a_pending_earlier_one() -> None:
    w = World(shards=1)
    w.land(["k-001", "k-002"])  # S1
    (g1,) = w.fin.finalize_partition(P)
    assert g1.generation == 1
    w.store.delete(Layout().success_marker(P))  # the finalizer died after the manifest, before _SUCCESS
    w.bq.pending = {"-g0001-"}  # generation 1's load job is still running
    loader = w.loader()
    w.run(loader, all_shown=False)
    assert not w.bq.fresh, "S1 was committed before any fresh pass: the fresh path skips it"

    w.land(["k-001"], when=w.clock.now - dt.timedelta(minutes=2))  # S2: the client's retry, through another front-end
    w.run(loader, all_shown=False)
    assert w.bq.view("ads_click")["k-001"] == 1, "k-001 is visible through the fresh table"

    gens = w.fin.finalize_partition(P)  # generation 2 over S2 (k-001 a duplicate), then _SUCCESS
    assert [m.generation for m in gens] == [2] and not gens[0].files
    w.run(loader, all_shown=False)
    assert w.store.stat(names.committed_marker(P, 2)) is not None, "generation 2's C3 ran (and then its marker)"
    assert w.store.stat(names.committed_marker(P, 1)) is None, "generation 1 is still not loaded"
    assert w.bq.view("ads_click")["k-001"] == 1, (
        "k-001 vanished from the view: generation 2's C3 deleted its only fresh row while generation 1, which commits "
        "it, is not loaded"
    )
    assert set(w.bq.statements) == {fresh_delete_sql(f"{TARGET}._fresh_core", f"{TARGET}.ads_click__committed")}

    w.bq.pending = set()  # generation 1 loads: k-001 is committed, and shown once (checked by run)
    w.run(loader)
    assert w.store.stat(names.committed_marker(P, 1)) is not None
