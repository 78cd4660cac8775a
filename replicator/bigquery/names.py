"""Names of tables, bookkeeping objects and load jobs. Pure functions: the same input gives the same name on every
worker, which is what makes loads idempotent without a leader.

Tables in ``<dataset>``:
  ``<category>``               VIEW, the name users query: each event_id exactly once (see views.py)
  ``<category>__committed``    committed partitions, loaded from manifests (one load job per manifest generation)
  ``_fresh_<tier>``            fresh rows of every category of the tier, loaded from staging batches

Bookkeeping objects in the landing bucket (under ``bq/``; nothing else writes there):
  ``bq/committed/<category>/YYYY/MM/DD/HH/g<GEN>.loaded``   the manifest of generation GEN is loaded and its fresh
                                                              rows are deleted
  ``bq/committed/<category>/YYYY/MM/DD/HH/sKKofNN-g<GEN>.loaded``   the same, of shard K of N (``layout.Shard``;
                                                              each shard has its own generation sequence)
  ``bq/fresh/<tier>/objects/<staging name>.avro``             rows of one staging object (the fresh table's format)
  ``bq/fresh/<tier>/<batch_id>.json``                         a fresh batch: the sorted staging objects it covers
  ``bq/fresh/<tier>/<batch_id>.loaded``                       the batch is loaded
  ``bq/errors/<job_base>.json``                               a load given up for good, with BigQuery's error

Job ids: ``<prefix>-commit-<dataset>-<category>-<YYYYMMDDHH>-g<GEN>-<token>-a<N>`` (a shard of a partition finalized
in shards: ``...-<YYYYMMDDHH>-sKKofNN-g<GEN>-...``) and ``<prefix>-fresh-<dataset>-<tier>-<batch_id>-a<N>``, where N
counts attempts after failed jobs (see jobs.py). Everything keyed by a manifest generation is keyed by (partition,
shard, generation): shards number their generations independently, so generation 1 of shard 0 and of shard 1 are
two manifests, two loads, two markers. An unsharded partition (``WHOLE``) keeps the names it always had.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from replicator.layout import WHOLE, Partition, Shard

PREFIX = "bq"
COMMITTED_SUFFIX = "__committed"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def committed_table(category: str) -> str:
    return f"{category}{COMMITTED_SUFFIX}"


def fresh_table(tier: str) -> str:
    """Tier names use ``-``; table names may not, and ``_`` never occurs in a tier name, so this is injective."""
    return f"_fresh_{tier.replace('-', '_')}"


def _shard_infix(shard: Shard) -> str:
    """``sKKofNN-`` for a shard of a partition finalized in shards; empty for ``WHOLE`` (names as before shards)."""
    return f"{shard.label}-" if shard.count > 1 else ""


def committed_marker(p: Partition, generation: int, shard: Shard = WHOLE) -> str:
    """The ``.loaded`` marker of generation ``generation`` of ``shard`` of ``p`` (module docstring)."""
    return f"{PREFIX}/committed/{p.path}/{_shard_infix(shard)}g{generation:04d}.loaded"


def committed_marker_dir(category: str) -> str:
    return f"{PREFIX}/committed/{category}/"


def fresh_dir(tier: str) -> str:
    return f"{PREFIX}/fresh/{tier}/"


def fresh_record(tier: str, batch_id: str) -> str:
    return f"{fresh_dir(tier)}{batch_id}.json"


def fresh_object(tier: str, staging_name: str) -> str:
    """The fresh table's Avro file of one staging object."""
    return f"{fresh_dir(tier)}objects/{staging_name}.avro"


def fresh_marker(tier: str, batch_id: str) -> str:
    return f"{fresh_dir(tier)}{batch_id}.loaded"


def error_record(job_base: str) -> str:
    return f"{PREFIX}/errors/{job_base}.json"


def batch_id(sources: Iterable[str]) -> str:
    """Deterministic id of a set of staging objects (order does not matter)."""
    return hashlib.sha256("\n".join(sorted(sources)).encode()).hexdigest()[:32]


def commit_job_base(prefix: str, dataset: str, p: Partition, generation: int, token: str, shard: Shard = WHOLE) -> str:
    """The job id (without attempt) of the load of generation ``generation`` of ``shard`` of ``p``. The shard label is
    part of it: shards' tokens differ, but only their first 16 characters are kept, so the label (not the token) is
    what keeps two shards' generation N apart."""
    tok = _UNSAFE.sub("_", token)[:16] or "none"
    return f"{prefix}-commit-{dataset}-{p.category}-{p.hour:%Y%m%d%H}-{_shard_infix(shard)}g{generation:04d}-{tok}"


def fresh_job_base(prefix: str, dataset: str, tier: str, batch: str) -> str:
    return f"{prefix}-fresh-{dataset}-{tier}-{batch}"


def job_id(base: str, attempt: int) -> str:
    return f"{base}-a{attempt}"
