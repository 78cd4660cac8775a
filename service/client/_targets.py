"""Where calls go, shared by the sync and async clients: the targets with failover, and the channel's credentials,
options and call metadata."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import grpc


def parse_targets(target: str | Sequence[str]) -> tuple[str, ...]:
    """``"h1:p1,h2:p2"`` or a list -> a non-empty tuple of ``host:port``. Raises ``ValueError``."""
    items = target.split(",") if isinstance(target, str) else list(target)
    out = tuple(t.strip() for t in items if t and t.strip())
    if not out:
        raise ValueError("at least one target host:port is required")
    return out


class Targets:
    """Failover order and the shared preferred target, where each delivery starts. Thread-safe.

    Each delivery walks the list with its own ``Cursor`` (the next target after the one that failed for *that*
    batch), so many batches failing at once cannot send each other back to the target they just left. The preferred
    target moves on only while it still points at a target that failed.
    """

    def __init__(self, targets: Sequence[str]) -> None:
        self.all = tuple(targets)
        self._preferred = 0
        self._lock = threading.Lock()

    @property
    def preferred(self) -> int:
        return self._preferred

    def cursor(self) -> Cursor:
        return Cursor(self)

    def failed(self, index: int) -> int:
        """Target ``index`` failed one attempt; returns the next one to try for that batch."""
        nxt = (index + 1) % len(self.all)
        with self._lock:
            if self._preferred == index:
                self._preferred = nxt
        return nxt


class Cursor:
    """One delivery's position in the failover order: ``index`` until ``advance`` (tenacity's ``before_sleep``)."""

    def __init__(self, targets: Targets) -> None:
        self._targets = targets
        self.index = targets.preferred

    def advance(self, *_: object) -> None:
        self.index = self._targets.failed(self.index)


def credentials(tls: bool | grpc.ChannelCredentials, root_certificates: bytes | None) -> grpc.ChannelCredentials | None:
    """None for plaintext; TLS credentials otherwise (``root_certificates`` overrides the system roots)."""
    if tls is False:
        return None
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    return grpc.ssl_channel_credentials(root_certificates=root_certificates)


CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()
