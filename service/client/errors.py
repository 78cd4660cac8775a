"""The SDK's errors: a shallow tree."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error raised by ``service.client``."""


class BufferFull(ClientError):
    """``send`` found the bounded buffer full and the client is configured not to block (or the wait timed out)."""


class ClientClosed(ClientError):
    """``send`` after ``close``."""


class InvalidEvent(ClientError):
    """The event cannot be built (e.g. a payload that is not bytes, str or JSON-serializable)."""
