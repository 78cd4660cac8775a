"""``SharedWatermark``: the workers of a tier tell each other their watermarks through the bucket.

A worker's own watermark (``Worker.watermark``) only sees the messages it holds or started recently. Another worker
may still hold a message published before an hour's deadline (a GCS stall on that worker only), and the hour must not
get its ``_SUCCESS`` meanwhile (G3). So every worker publishes its watermark every ``interval``, and a partition is
closable only when every *live* worker of its tier is past the deadline.

Objects (empty; everything is in the name, so one listing reads every worker of the tier):
  workers/<tier>/<writer>/<written_ms>-<watermark_ms>
``writer`` is the worker's id (``host:pid``, made name-safe). A heartbeat whose ``written_ms`` is older than
``stale_after`` is ignored: its worker is gone, and Pub/Sub redelivers what it held to the others, whose own
watermarks then hold the hour (``stale_after`` covers the lease extension, so the redelivery comes first). A worker
replaces its heartbeat (create the new one, then delete its older ones), deletes it on a clean stop, and deletes any
heartbeat older than ``forget_after`` (dead workers').

Contract: ``others`` never raises for a missing or malformed heartbeat (ignored); it raises ``StoreError`` when the
bucket cannot be listed, and the caller then treats partitions as not closable.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable

from replicator.store import ObjectStore

log = logging.getLogger(__name__)
PREFIX = "workers"
_NAME = re.compile(r"^(?P<writer>[A-Za-z0-9._-]+)/(?P<written>\d+)-(?P<watermark>\d+)$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _ms(t: dt.datetime) -> int:
    return max(0, (t - _EPOCH) // dt.timedelta(milliseconds=1))


def _at(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def safe_writer(writer: str) -> str:
    """``writer`` with every character outside ``[A-Za-z0-9._-]`` replaced by ``_`` (at most 100 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", writer)[:100] or "_"


class SharedWatermark:
    """One tier's heartbeats in ``store``, as seen by the worker ``writer``. Thread-safe enough for one publisher
    thread and one reader thread (no shared mutable state besides the cache, replaced whole)."""

    def __init__(
        self,
        store: ObjectStore,
        tier: str,
        writer: str,
        clock: Callable[[], dt.datetime],
        *,
        stale_after: dt.timedelta,
        forget_after: dt.timedelta = dt.timedelta(days=1),
        cache_for: dt.timedelta = dt.timedelta(seconds=5),
    ) -> None:
        self._store, self._clock = store, clock
        self._dir = f"{PREFIX}/{tier}/"
        self._writer = safe_writer(writer)
        self._stale_after, self._forget_after, self._cache_for = stale_after, forget_after, cache_for
        self._cached: tuple[dt.datetime, dt.datetime | None] | None = None  # (computed at, result)

    def publish(self, watermark: dt.datetime) -> None:
        """Replace this worker's heartbeat with one saying ``watermark``; delete heartbeats older than
        ``forget_after``. Raises ``StoreError``."""
        now = self._clock()
        name = f"{self._dir}{self._writer}/{_ms(now)}-{_ms(watermark)}"
        self._store.create_if_absent(name, b"", None, "text/plain")
        for info in self._store.list(self._dir):
            parsed = _NAME.match(info.name[len(self._dir) :])
            if parsed is None or info.name == name:
                continue
            mine = parsed["writer"] == self._writer
            if mine or now - _at(int(parsed["written"])) > self._forget_after:
                self._store.delete(info.name)

    def withdraw(self) -> None:
        """Delete this worker's heartbeats (a clean stop). Raises ``StoreError``."""
        for info in self._store.list(f"{self._dir}{self._writer}/"):
            self._store.delete(info.name)

    def others(self) -> dt.datetime | None:
        """The lowest watermark of the other live workers of the tier, or None when there are none. Cached for
        ``cache_for`` (a finalizer pass asks once per partition). Raises ``StoreError``."""
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < self._cache_for:
            return self._cached[1]
        newest: dict[str, tuple[int, int]] = {}  # writer -> (written_ms, watermark_ms) of its newest heartbeat
        for info in self._store.list(self._dir):
            parsed = _NAME.match(info.name[len(self._dir) :])
            if parsed is None or parsed["writer"] == self._writer:
                continue
            entry = (int(parsed["written"]), int(parsed["watermark"]))
            if entry > newest.get(parsed["writer"], (-1, -1)):
                newest[parsed["writer"]] = entry
        live = [_at(wm) for written, wm in newest.values() if now - _at(written) <= self._stale_after]
        result = min(live, default=None)
        self._cached = (now, result)
        return result
