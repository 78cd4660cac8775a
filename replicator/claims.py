"""Finalization claims: the workers share out the closable partitions instead of all working on the same one.

Every worker runs a finalizer loop, and every loop lists the same closable partitions in the same order. Without
claims, N workers all merge the same partition at the same time and N - 1 of them lose the commit race: N times the
CPU, no partition done sooner, and the landing on every worker slowed. With claims, a worker that finds a partition
claimed by a live peer skips it this pass and goes on to the next one.

Claims are advisory. Correctness (no loss, no duplicate) never depends on them: the manifest precondition still
settles every race (docs/design.md, "Commit protocol"). A claim that is lost, stolen, expired or never deleted costs
duplicated work or a delay of at most ``ttl`` (plus a finalizer interval), nothing else.

Objects (everything a reader needs is in the listing: ``writer``, ``expires_ms`` and ``nonce`` are custom metadata):
  claims/<category>/YYYY/MM/DD/HH/e<EPOCH>        EPOCH: 8 digits, 1-based
  claims/<category>/YYYY/MM/DD/HH/sKKofNN/e<EPOCH>    the same, for shard KK of a partition finalized in NN shards
A claim is the object with the highest epoch of its partition; it is live until ``expires_ms`` (its holder's clock,
epoch milliseconds; never later than a ttl after the store created the object). Taking a partition creates epoch
n + 1 (create-if-absent, so of two workers that both saw epoch n expire, one wins). The holder renews by checking
that epoch n is still its own (a taker deletes it), creating epoch n + 1, then deleting epoch n: there is never a
moment without a live claim. A clean release deletes the holder's epoch (only if its nonce is this claim's). A
SIGKILLed holder's claim expires after ``ttl``; the next finalizer pass of a peer then takes the partition.

Contract:
  * ``acquire(p)`` returns a ``Claim`` or None (a live claim of another writer). A leftover claim of this same
    writer is taken back at once. Raises ``StoreError`` when the bucket cannot be listed or written (the caller
    treats it like any failure of the partition); a claim its failed create may have stored is released first.
  * ``Claim.renew_if_due()`` is cheap (a clock read) until a third of ``ttl`` has passed since the last renewal; it
    never raises (a failed renewal is logged and retried at the next call). A holder that goes more than two thirds
    of the ttl without a call can find its claim taken over (``lost``); ``Claim.check()`` then raises ``ClaimLost``.
  * ``Claim.release()`` never raises.
  * Clocks: expiry is judged by the reader's clock against the holder's. Skew between workers shifts it by the
    skew, and ``ttl`` (default 180 s) is far larger than NTP's.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from replicator.errors import StoreError
from replicator.layout import WHOLE, Partition, Shard
from replicator.metrics import Metrics
from replicator.store import ObjectInfo, ObjectStore

log = logging.getLogger(__name__)
PREFIX = "claims"
#: ``logpipe replicate --finalize-claim-seconds`` default.
DEFAULT_TTL = dt.timedelta(seconds=180)
_EPOCH_RE = re.compile(r"e(\d{8})")
_UNIX = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
T = TypeVar("T")


def _ms(t: dt.datetime) -> int:
    return (t - _UNIX) // _MS


class ClaimLost(Exception):
    """Raised by ``Claim.check`` once another writer took the partition over: stop working on it (advisory)."""


class Stopping(Exception):
    """Raised by ``under_claim``'s tick once the process is stopping."""


def under_claim(
    claims: PartitionClaims | None,
    p: Partition,
    stopping: Callable[[], bool],
    work: Callable[[Callable[[], None]], T],
    shard: Shard = WHOLE,
) -> T | None:
    """``work(tick)`` under this writer's claim on ``p`` (released after, whatever happens); None, without calling
    ``work``, while another writer's claim on ``p`` is live. Without ``claims``, just ``work(tick)``.

    ``work`` must call ``tick`` between its long steps: it raises ``Stopping`` once ``stopping()`` is true, renews
    the claim when due, and raises ``ClaimLost`` once a peer has taken the claim over. Raises what ``acquire`` and
    ``work`` raise. ``shard``: a partition finalized in shards is claimed per shard."""
    claim = claims.acquire(p, shard) if claims is not None else None
    if claims is not None and claim is None:
        return None

    def tick() -> None:
        if stopping():
            raise Stopping("the worker is stopping")
        if claim is not None:
            claim.check()

    try:
        return work(tick)
    finally:
        if claim is not None:
            claim.release()


def _top(store: ObjectStore, directory: str) -> tuple[list[tuple[int, ObjectInfo]], tuple[int, ObjectInfo] | None]:
    """Every epoch object under ``directory`` (as (epoch, info)), and the highest: the claim."""
    epochs = [
        (int(m.group(1)), info)
        for info in store.list(directory)
        if (m := _EPOCH_RE.fullmatch(info.name.removeprefix(directory)))  # not a shard's claims below it
    ]
    return epochs, max(epochs, key=lambda e: e[0], default=None)


def _expires_ms(info: ObjectInfo, ttl: dt.timedelta) -> int:
    """When the claim ``info`` expires: its holder's ``expires_ms``, but never later than a ttl after the store
    created it (a holder's clock running ahead); 0 (expired) when unreadable."""
    try:
        return min(int(info.metadata.get("expires_ms", "0")), _ms(info.updated + ttl))
    except ValueError:
        return 0


def _directory(prefix: str, p: Partition, shard: Shard) -> str:
    return f"{prefix}/{p.path}/{shard.label}/" if shard.count > 1 else f"{prefix}/{p.path}/"


def holder(
    store: ObjectStore,
    p: Partition,
    now: dt.datetime,
    ttl: dt.timedelta = DEFAULT_TTL,
    prefix: str = PREFIX,
    shard: Shard = WHOLE,
) -> tuple[str, dt.datetime] | None:
    """(writer, expiry) of the live claim on ``p`` at ``now``, or None: for ``logpipe partitions``, which cannot
    know the workers' ttl and assumes the default one. Raises ``StoreError``."""
    _, top = _top(store, _directory(prefix, p, shard))
    if top is None or (expires := _expires_ms(top[1], ttl)) <= _ms(now):
        return None
    return top[1].metadata.get("writer", "?"), _UNIX + expires * _MS


@dataclass
class PartitionClaims:
    """Claims of one worker (``writer``) in ``store``. Thread-safe: no mutable state; each ``Claim`` is used by the
    one thread that acquired it."""

    store: ObjectStore
    writer: str
    ttl: dt.timedelta
    metrics: Metrics
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    prefix: str = PREFIX

    def directory(self, p: Partition, shard: Shard = WHOLE) -> str:
        return _directory(self.prefix, p, shard)

    def acquire(self, p: Partition, shard: Shard = WHOLE) -> Claim | None:
        """Claim ``p`` (its ``shard``) for this writer, or None while another writer's claim on it is live. See the
        module contract."""
        directory = self.directory(p, shard)
        epochs, top = _top(self.store, directory)
        holder = top[1].metadata.get("writer", "") if top else ""
        if top is not None and holder != self.writer and (expires := _expires_ms(top[1], self.ttl)) > _ms(self.clock()):
            self.metrics.finalize_claims.labels("held_elsewhere").inc()
            log.debug("%s is claimed by %s until %d ms; skipped", directory, holder, expires)
            return None
        claim = Claim(self, p, (top[0] if top else 0) + 1, shard=shard)
        try:
            created = claim.create()
        except StoreError:
            claim.release()  # it may exist although the call failed: never leave it to block peers for a ttl
            raise
        if not created:
            self.metrics.finalize_claims.labels("held_elsewhere").inc()  # a peer took the same epoch first
            return None
        theirs = top is not None and holder != self.writer
        self.metrics.finalize_claims.labels("taken_over" if theirs else "acquired").inc()
        if theirs:
            log.info("took over %s: the claim of %s expired", claim.name, holder or "?")
        for _, info in epochs:  # expired, or this writer's own leftover: best effort (the lifecycle rule, else)
            claim.delete(info.name)
        return claim


@dataclass
class Claim:
    """This writer's claim on ``partition`` at ``epoch`` (``PartitionClaims.acquire``)."""

    claims: PartitionClaims
    partition: Partition
    epoch: int
    shard: Shard = WHOLE
    renewed: dt.datetime = field(default_factory=lambda: _UNIX)
    lost: bool = False
    #: Tells this claim's objects from another claim of the same writer (a create whose response was lost).
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def name(self) -> str:
        return f"{self.claims.directory(self.partition, self.shard)}e{self.epoch:08d}"

    def create(self) -> bool:
        """Create this epoch's object (expiring ``ttl`` from now). False if another claim holds this epoch; True if
        this claim does (created now, or by an earlier attempt whose response was lost)."""
        c = self.claims
        now = c.clock()
        expires = _ms(now + c.ttl)
        meta = {"writer": c.writer, "expires_ms": str(expires), "nonce": self.nonce}
        body = json.dumps({"format": "logpipe.claim.v1", "writer": c.writer, "expires_ms": expires}).encode()
        if not c.store.create_if_absent(self.name, body + b"\n", meta, "application/json").created:
            info = c.store.stat(self.name)
            if info is None or info.metadata.get("nonce") != self.nonce:
                return False
        self.renewed = now
        return True

    def renew_if_due(self) -> None:
        """Move the claim to the next epoch once a third of the ttl has passed since the last renewal."""
        if self.lost or self.claims.clock() - self.renewed < self.claims.ttl / 3:
            return
        old = self.name
        try:
            mine = self.claims.store.stat(old)
        except StoreError as exc:
            log.warning("renewing the claim %s failed (retried at the next step): %s", old, exc)
            return
        if mine is None or mine.metadata.get("nonce") != self.nonce:  # a taker deleted it (and may be done already)
            self._lose(old)
            return
        self.epoch += 1
        try:
            if self.create():
                self.delete(old)  # epoch n was this claim's: a taker would have created n + 1 instead of us
                return
        except StoreError as exc:
            self.epoch -= 1
            log.warning("renewing the claim %s failed (retried at the next step): %s", old, exc)
            return
        self.epoch -= 1  # the next epoch is a peer's: never delete it
        self._lose(old)

    def _lose(self, name: str) -> None:
        self.lost = True  # a peer judged our claim expired (we stalled past 2/3 of the ttl): it does the work
        self.claims.metrics.finalize_claims.labels("lost").inc()
        log.warning("the claim %s was taken over by another writer; leaving the partition to it", name)

    def check(self) -> None:
        """``renew_if_due``, then raise ``ClaimLost`` if another writer has taken the partition over: the caller
        stops (whatever it wrote is reused by the taker, or collected as orphans)."""
        self.renew_if_due()
        if self.lost:
            raise ClaimLost(f"{self.name}: taken over by another writer")

    def release(self) -> None:
        """Delete this claim's current epoch if it is this claim's (its nonce): a holder that stalled past its ttl
        never deletes the claim of whoever took the partition next. Never raises; a claim left behind expires."""
        try:
            info = self.claims.store.stat(self.name)
        except StoreError as exc:
            log.warning("could not check the claim %s (it expires): %s", self.name, exc)
            return
        if info is not None and info.metadata.get("nonce") == self.nonce:
            self.delete(self.name)

    def delete(self, name: str) -> None:
        try:
            self.claims.store.delete(name)
        except StoreError as exc:
            log.warning("could not delete the claim %s (it expires): %s", name, exc)
