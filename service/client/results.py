"""What the SDK reports back: per-event rejections and failures, and the result of ``flush``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Rejection:
    """The front-end refused one event for a reason that retrying will not fix. ``code`` is a StatusCode name."""

    event_id: str
    category: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Failure:
    """An event that could not be delivered: a permanent gRPC error, or retries ran out. It may or may not have been
    stored (an ack can be lost); re-sending it with the same ``event_id`` is safe."""

    event_id: str
    category: str
    grpc_code: str
    message: str


@dataclass(frozen=True, slots=True)
class FlushResult:
    """Outcome of every event settled since the previous ``flush``.

    ``rejected`` and ``failed`` list at most ``ClientOptions.max_listed_outcomes`` items together (G4: a long outage
    must not grow memory until the next flush). Outcomes past that bound are only counted, in
    ``rejected_not_listed`` / ``failed_not_listed``; ``on_rejected`` still saw each one as it happened.
    ``accepted + rejected_count + failed_count`` is the number of events settled.
    """

    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    rejected_not_listed: int = 0
    failed_not_listed: int = 0

    @property
    def rejected_count(self) -> int:
        return len(self.rejected) + self.rejected_not_listed

    @property
    def failed_count(self) -> int:
        return len(self.failed) + self.failed_not_listed

    @property
    def ok(self) -> bool:
        return not self.rejected_count and not self.failed_count
