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
    """Outcome of every event settled since the previous ``flush``."""

    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failed
