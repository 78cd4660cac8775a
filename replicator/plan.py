"""The partition plan ``logs/<P>/_plan.json``: how many shards finalize a partition, fixed before its first commit.

JSON (``logpipe.plan.v1``; public, docs/formats.md)::

  {"format": "logpipe.plan.v1", "category": "ads_click", "partition": "2026-11-26T13", "shards": 4,
   "created": "2026-11-26T14:10:00.000000Z", "writer": "host:pid"}

Why a plan object and not each finalizer's configuration: every generation of a partition must use the same shard
count (a shard skips only the ids its own earlier generations committed), and workers in the middle of a rollout of
a new ``finalize_shards`` disagree on it. The plan is created if absent, so of two finalizers that both find none,
one wins and the other adopts its count: the single decision point, like the manifest is for a generation.

Contract of ``resolve_shards``: the partition's shard count, the same for every caller whatever its ``want``:
  * an existing plan's ``shards``;
  * for a partition that has manifests and no plan (committed by a version before plans): the count its manifest
    names carry (1 when they have no shard label);
  * otherwise the plan is created with ``want`` (or the winner's count is read back).
Raises ``StoreError`` and ``PlanError`` (a plan object that does not parse, or manifests that disagree with it:
``check_manifests``).

``check_manifests`` is the finalizer's guard against a mixed-version fleet: a worker of a version without plans
commits a partition whole (``_manifest-g<GEN>.json``) even when this version planned it in shards. Committing the
shards as well would put every event in two manifests, so a partition whose manifests carry a shard count other
than its plan's is refused, loudly, and left to an operator (docs/design.md, "Upgrades").
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Final

from replicator.layout import MAX_SHARDS, Layout, Partition, manifest_generation, manifest_shard
from replicator.store import ObjectStore
from service import envelope as envelope_format

FORMAT: Final = "logpipe.plan.v1"


class PlanError(ValueError):
    """A ``_plan.json`` that does not parse as ``logpipe.plan.v1``, or a partition whose manifests disagree with it."""


def parse(data: bytes) -> int:
    """The shard count of a plan object. Raises ``PlanError``."""
    try:
        d = json.loads(data)
        shards = int(d["shards"]) if d.get("format") == FORMAT else 0
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PlanError(f"not a logpipe plan: {exc!r}") from None
    if not 1 <= shards <= MAX_SHARDS:
        raise PlanError(f"not a logpipe plan (format {FORMAT}, 1..{MAX_SHARDS} shards): {data[:200]!r}")
    return shards


def existing_shards(store: ObjectStore, layout: Layout, p: Partition, names: list[str]) -> int | None:
    """The shard count fixed for ``p``, given the names listed under its ``logs/`` folder: from the plan, else
    from the manifest names, else None (nothing fixed it yet)."""
    if layout.plan(p) in names:
        return parse(store.read(layout.plan(p)))
    counts = {s.count for n in names if (s := manifest_shard(n)) is not None}
    return max(counts) if counts else None


def foreign_manifests(names: Iterable[str], shards: int) -> list[str]:
    """The manifest names among ``names`` committed with a shard count other than ``shards``, sorted."""
    return sorted(
        n
        for n in names
        if (s := manifest_shard(n)) is not None and manifest_generation(n) is not None and s.count != shards
    )


def check_manifests(p: Partition, shards: int, names: Iterable[str]) -> None:
    """Raise ``PlanError`` unless every manifest among ``names`` (a listing of ``p``'s folder) was committed with
    ``shards`` shards. A finalizer calls it before each commit: committing on top of a foreign manifest would commit
    its events a second time (G2)."""
    foreign = foreign_manifests(names, shards)
    if foreign:
        raise PlanError(
            f"{p.category} {p.hour:%Y-%m-%dT%H}: finalized in {shards} shard(s) by its plan, but {len(foreign)} "
            f"manifest(s) carry another shard count, e.g. {foreign[0]} (a worker of a version without plans "
            f"committed it?); refusing to commit more: see docs/deploy.md, 'Upgrades and shard plan conflicts'"
        )


def resolve_shards(store: ObjectStore, layout: Layout, p: Partition, want: int, writer: str, now: dt.datetime) -> int:
    """The shard count of ``p``, creating its plan with ``want`` when nothing fixed it yet (see the module)."""
    names = [i.name for i in store.list(layout.partition_dir(p))]
    found = existing_shards(store, layout, p, names)
    if found is not None:
        check_manifests(p, found, names)
        return found
    body = {
        "format": FORMAT,
        "category": p.category,
        "partition": p.hour.strftime("%Y-%m-%dT%H"),
        "shards": want,
        "created": envelope_format.rfc3339(now),
        "writer": writer,
    }
    data = (json.dumps(body) + "\n").encode()
    parse(data)  # ``want`` out of range: fail before writing
    if store.create_if_absent(layout.plan(p), data, None, "application/json").created:
        return want
    return parse(store.read(layout.plan(p)))
