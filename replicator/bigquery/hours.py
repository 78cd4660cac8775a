"""The loader's calendar: the UTC days a window lists, and the staging hours a fresh pass lists.

A (category, hour) partition is *complete* once ``logs/<category>/YYYY/MM/DD/HH/_SUCCESS`` exists
(``Layout.success_marker``). The finalizer writes it after generation 1 (of every shard, for a partition finalized
in shards), once the hour closed (watermark plus lateness: G3), and nothing ever deletes it. The committed pass sees
these markers in the listings of ``logs/<category>/YYYY/MM/DD/`` it makes anyway, and hands them to the fresh pass as
``CompleteHours``. The fresh pass lists only the staging hours not known complete (``staging_prefixes``). Staging
objects stay in the bucket for 30 days, long after their hour committed, so listing the whole horizon (2-3 days of
envelopes) every minute would cost what the traffic costs; this costs what the open hours cost.

Safety (docs/design.md, "The fresh pass lists open hours only"): the fresh path only shortens latency. G1 rests on the
committed path, G2 on the view (committed rows win, QUALIFY collapses fresh copies). Skipping a complete hour only
means that an envelope landing late into it is not shown by the fresh path; it becomes queryable once the finalizer
commits it as a delta generation and the committed pass loads that. With shards this includes an envelope that landed
between two shards' generation 1 (the earlier shard commits it in its delta) and, until loaded, a shard's manifest
whose load is pending: latency only, as for an unsharded generation. Knowledge only grows, and its absence (a day not
listed yet, or forgotten) means "list it": a stale ``CompleteHours`` costs listings, never data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from replicator.layout import Layout, days_between, parse_partition_dir

#: (category, UTC day) -> the hours (0-23) of that day whose ``_SUCCESS`` a listing has seen. No key: none known.
CompleteHours = Mapping[tuple[str, dt.date], frozenset[int]]
NONE_COMPLETE: CompleteHours = MappingProxyType({})


def first_day(now: dt.datetime, window: dt.timedelta) -> dt.date:
    """The oldest UTC day a window reaching ``window`` back from ``now`` lists (the start of ``days_between``)."""
    return (now - window).astimezone(dt.UTC).date()


def is_complete(complete: CompleteHours, category: str, hour: dt.datetime) -> bool:
    """Whether the partition (``category``, the UTC hour of ``hour``) is known complete."""
    utc = hour.astimezone(dt.UTC)
    return utc.hour in complete.get((category, utc.date()), ())


def success_hour(name: str, layout: Layout) -> int | None:
    """The UTC hour (0-23) of the partition whose ``_SUCCESS`` object ``name`` is; None for any other object."""
    p = parse_partition_dir(name, layout.logs_prefix) if name.endswith("/_SUCCESS") else None
    return p.hour.hour if p is not None and name == layout.success_marker(p) else None


def staging_prefixes(
    staging: str, categories: Iterable[str], start: dt.datetime, end: dt.datetime, complete: CompleteHours
) -> Iterator[str]:
    """The prefixes to list for the staging objects of ``categories``, from the UTC day of ``start`` to the hour of
    ``end``, whose hour is not known complete.

    A day with no complete hour known is one prefix (``<staging>/<category>/YYYY/MM/DD/``: the same objects as its
    hours', in one listing). A day with some is one prefix per other hour up to ``end`` (``.../HH/``), so a day
    whose hours are all complete costs nothing. An hour without data never completes (the finalizer writes no
    ``_SUCCESS`` for it), so each quiet hour of a busy day costs one empty listing per pass.
    """
    last = end.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    for category in categories:
        for day in days_between(start, end):
            done = complete.get((category, day), frozenset())
            if not done:
                yield f"{staging}/{category}/{day:%Y/%m/%d}/"
                continue
            for h in range(24):
                hour = dt.datetime.combine(day, dt.time(h), dt.UTC)
                if h not in done and hour <= last:
                    yield f"{staging}/{category}/{hour:%Y/%m/%d/%H}/"
