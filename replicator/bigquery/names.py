"""Names of tables, bookkeeping objects and load jobs. Pure functions: the same input gives the same name on every
worker, which is what makes loads idempotent without a leader.

Tables in ``<dataset>``:
  ``<category>``               VIEW, the name users query: each event_id exactly once (see views.py)
  ``<category>__committed``    committed partitions, loaded from manifests (one load job per manifest generation)
  ``_fresh_<tier>``            fresh rows of every category of the tier, loaded from staging batches

Bookkeeping objects in the landing bucket (under ``bq/``; nothing else writes there):
  ``bq/committed/<category>/YYYY/MM/DD/HH/g<GEN>.loaded``   the manifest of generation GEN is loaded and its fresh
                                                              rows are deleted
  ``bq/fresh/<tier>/objects/<staging name>.avro``             rows of one staging object (the fresh table's format)
  ``bq/fresh/<tier>/<batch_id>.json``                         a fresh batch: the sorted staging objects it covers
  ``bq/fresh/<tier>/<batch_id>.loaded``                       the batch is loaded
  ``bq/errors/<job_base>.json``                               a load given up for good, with BigQuery's error

Job ids: ``<prefix>-commit-<dataset>-<category>-<YYYYMMDDHH>-g<GEN>-<token>-a<N>`` and
``<prefix>-fresh-<dataset>-<tier>-<batch_id>-a<N>``, where N counts attempts after failed jobs (see jobs.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from replicator.layout import Partition

PREFIX = "bq"
COMMITTED_SUFFIX = "__committed"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def committed_table(category: str) -> str:
    return f"{category}{COMMITTED_SUFFIX}"


def fresh_table(tier: str) -> str:
    """Tier names use ``-``; table names may not, and ``_`` never occurs in a tier name, so this is injective."""
    return f"_fresh_{tier.replace('-', '_')}"


def committed_marker(p: Partition, generation: int) -> str:
    return f"{PREFIX}/committed/{p.path}/g{generation:04d}.loaded"


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


def commit_job_base(prefix: str, dataset: str, p: Partition, generation: int, token: str) -> str:
    tok = _UNSAFE.sub("_", token)[:16] or "none"
    return f"{prefix}-commit-{dataset}-{p.category}-{p.hour:%Y%m%d%H}-g{generation:04d}-{tok}"


def fresh_job_base(prefix: str, dataset: str, tier: str, batch: str) -> str:
    return f"{prefix}-fresh-{dataset}-{tier}-{batch}"


def job_id(base: str, attempt: int) -> str:
    return f"{base}-a{attempt}"
