"""The front-end's errors: a shallow tree. Leaves carry their data as fields."""

from __future__ import annotations


class FrontendError(Exception):
    """Base of every error raised by ``service.frontend``."""


class ConfigError(FrontendError):
    """The configuration is invalid or unsafe; the message says which setting and why."""


class Backpressure(FrontendError):
    """A bounded stage is full. The caller should answer RESOURCE_EXHAUSTED and retry after ``retry_after_s``."""

    def __init__(self, what: str, retry_after_s: float) -> None:
        super().__init__(f"{what} is full; retry after {retry_after_s:.3f}s")
        self.what = what
        self.retry_after_s = retry_after_s


class SpoolFull(Backpressure):
    """The on-disk spool reached its byte bound while Pub/Sub is failing."""


class SpoolCorrupt(FrontendError):
    """A spool file failed its checks (never produced by a completed write; reported, then moved aside)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class NotDurable(FrontendError):
    """An envelope could be neither published nor spooled; its events must not be acked."""

    def __init__(self, envelope_id: str, reason: str) -> None:
        super().__init__(f"envelope {envelope_id} is not durable: {reason}")
        self.envelope_id = envelope_id
        self.reason = reason


class AuthError(FrontendError):
    """Authentication failed (no or unknown token). Never carries the token itself."""


class ShuttingDown(FrontendError):
    """The front-end stopped taking new events (SIGTERM); the client should go to another front-end."""
