"""``ReplicatorConfig``: everything a replicator process needs, read ONCE at the entry point from flags + environment.

Environment (flags win): GOOGLE_CLOUD_PROJECT, PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST, LOGPIPE_BUCKET,
LOGPIPE_CATALOG, LOGPIPE_CRASH_AT (fault tests only). See docs/design.md, "CLI and environment contract".
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from replicator.claims import DEFAULT_TTL
from replicator.crash import CrashPoints
from replicator.errors import ConfigError

MAX_PUBSUB_MESSAGE = 10 * 1024 * 1024

#: Where a field comes from, as a ``ConfigError`` names it (default: the flag ``--field-name``).
_SOURCES = {
    "project": "--project (env GOOGLE_CLOUD_PROJECT)",
    "bucket": "--bucket (env LOGPIPE_BUCKET)",
    "catalog_path": "--catalog (env LOGPIPE_CATALOG)",
    "tiers": "--tier",
    "receive_window_seconds": "--receive-window",
    "pubsub_emulator_host": "env PUBSUB_EMULATOR_HOST",
    "storage_emulator_host": "env STORAGE_EMULATOR_HOST",
    "crash_at": "env LOGPIPE_CRASH_AT",
}


class ReplicatorConfig(BaseModel):
    """Frozen configuration of ``logpipe replicate`` / ``finalize`` / ``partitions``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    project: str = Field(min_length=1)
    bucket: str = Field(min_length=3)
    catalog_path: str | None = None
    tiers: tuple[str, ...] = ()
    pubsub_emulator_host: str | None = None
    storage_emulator_host: str | None = None
    lateness_seconds: float = Field(default=600.0, ge=0)
    #: The watermark also stays at or below the oldest publish time among the messages started this long ago or
    #: later (docs/design.md, "Watermark"): a draining backlog and a nacked message's redelivery keep hours open.
    receive_window_seconds: float = Field(default=120.0, ge=0)
    #: How often a worker publishes its watermark to the bucket for the other workers of its tiers
    #: (``replicator/watermarks.py``); a heartbeat older than 3 intervals plus the lease extension is ignored.
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    finalize_interval: float = Field(default=30.0, gt=0)
    #: A finalizer pass lists only the staging days holding the last this many hours (and the next one); it must
    #: exceed the lateness + 1 h, so that an hour becomes closable while it is still in the window.
    finalize_hot_hours: float = Field(default=6.0, gt=0)
    #: One finalizer pass this often (and the first of a process) lists every staging object (late data into older
    #: hours; a full scan that fails to list stays due).
    finalize_full_scan_seconds: float = Field(default=3600.0, gt=0)
    #: A worker's finalizer works on a partition only under a claim that lives this long after its last renewal
    #: (``replicator/claims.py``); 0 turns claims off (every worker works on every closable partition).
    finalize_claim_seconds: float = Field(default=DEFAULT_TTL.total_seconds(), ge=0)
    finalize: bool = True
    max_messages: int = Field(default=64, ge=1)
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=MAX_PUBSUB_MESSAGE)
    max_lease_seconds: float = Field(default=600.0, ge=10)
    lease_extension_seconds: int = Field(default=60, ge=10, le=600)
    threads: int = Field(default=8, ge=1, le=256)
    target_file_bytes: int = Field(default=128 * 1024 * 1024, ge=1024)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    drain_timeout: float = Field(default=20.0, ge=0)
    gcs_deadline: float = Field(default=60.0, gt=0)
    nack_delay: float = Field(default=10.0, ge=0)
    dead_letter_timeout: float = Field(default=30.0, gt=0)
    crash_at: str | None = None
    writer: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    @field_validator("crash_at")
    @classmethod
    def _crash_at(cls, v: str | None) -> str | None:
        CrashPoints.parse(v)  # raises ValueError for an unknown step
        return v

    @model_validator(mode="after")
    def _hot_window_holds_closing_hours(self) -> ReplicatorConfig:
        if self.finalize and self.finalize_hot_hours * 3600 <= self.lateness_seconds + 3600:
            raise ValueError(
                f"--finalize-hot-hours must exceed the lateness + 1 h ({(self.lateness_seconds + 3600) / 3600:g} h; "
                f"got {self.finalize_hot_hours:g})"
            )
        return self

    @property
    def lateness(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.lateness_seconds)

    @property
    def finalize_hot_window(self) -> dt.timedelta:
        return dt.timedelta(hours=self.finalize_hot_hours)

    @property
    def finalize_claim_ttl(self) -> dt.timedelta | None:
        return dt.timedelta(seconds=self.finalize_claim_seconds) if self.finalize_claim_seconds > 0 else None

    @property
    def finalize_full_scan_interval(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.finalize_full_scan_seconds)

    @staticmethod
    def from_sources(flags: Mapping[str, Any], env: Mapping[str, str]) -> ReplicatorConfig:
        """Build from CLI flags (None = not given) and an environment mapping.

        Raises:
            ConfigError: one line naming each bad field by its flag or environment variable, e.g. ``missing --bucket
                (env LOGPIPE_BUCKET)`` or ``--threads: Input should be less than or equal to 256 (got 1000)``.
        """
        values: dict[str, Any] = {
            "project": env.get("GOOGLE_CLOUD_PROJECT", ""),
            "bucket": env.get("LOGPIPE_BUCKET", ""),
            "catalog_path": env.get("LOGPIPE_CATALOG") or None,
            "pubsub_emulator_host": env.get("PUBSUB_EMULATOR_HOST") or None,
            "storage_emulator_host": env.get("STORAGE_EMULATOR_HOST") or None,
            "crash_at": env.get("LOGPIPE_CRASH_AT") or None,
        }
        values.update({k: v for k, v in flags.items() if v is not None})
        try:
            return ReplicatorConfig(**values)
        except ValidationError as exc:
            raise ConfigError("; ".join(_problem(e) for e in exc.errors())) from None
        except ValueError as exc:
            raise ConfigError(f"invalid replicator configuration: {exc}") from None


def _problem(error: Any) -> str:
    """One pydantic error as ``<flag or env>: <message> (got <value>)``; an empty required string as ``missing``."""
    field = ".".join(str(p) for p in error["loc"])
    if not field:  # a check across fields: its message names the flags
        return str(error["msg"]).removeprefix("Value error, ")
    source = _SOURCES.get(field, "--" + field.replace("_", "-"))
    if error["type"] in ("missing", "string_too_short") and error.get("input") in ("", None):
        return f"missing {source}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    return f"{source}: {msg} (got {error.get('input')!r})"
