"""The replicator's errors. Shallow on purpose: callers branch on "transient" versus "permanent" and nothing else."""

from __future__ import annotations


class ReplicatorError(Exception):
    """Base of every error the replicator raises on purpose."""


class StoreError(ReplicatorError):
    """An object-store operation failed for good (permanent error, or transient errors past the retry deadline).

    Attributes:
        op: The operation (``create``, ``read``, ``list``, ``delete``).
        name: The object name or prefix.
        transient: True when the last cause was transient and only the deadline ran out.
    """

    def __init__(self, op: str, name: str, cause: str, *, transient: bool) -> None:
        super().__init__(f"{op} {name}: {cause}")
        self.op = op
        self.name = name
        self.transient = transient


class ObjectNotFound(ReplicatorError):
    """``read`` of an object that does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no such object: {name}")
        self.name = name


class ConfigError(ReplicatorError):
    """Invalid replicator configuration (a flag, an environment variable, the catalog)."""
