"""The front-end's configuration: one frozen model, filled from a YAML file, then ``LOGPIPE_*`` variables, then flags.

Contract:
  * ``load_config`` is called once, at the entry point; nothing below it reads the environment.
  * Precedence: defaults < YAML file < environment < flags (``overrides``). Unknown keys in the file or in
    ``overrides`` are errors; unknown ``LOGPIPE_*`` variables are ignored (other components own them).
  * Besides ``LOGPIPE_<FIELD>`` (field name upper-cased), the standard variables ``GOOGLE_CLOUD_PROJECT`` (project),
    ``PUBSUB_EMULATOR_HOST`` (pubsub_emulator_host) and ``LOGPIPE_LISTEN=host:port`` (host and port) are honoured.
  * Invalid values raise ``ConfigError`` naming the field and where the value came from.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from service.envelope import MAX_MESSAGE_BYTES
from service.frontend.errors import ConfigError

MIB = 1024 * 1024
#: An event's serialized bytes beyond its payload, attributes and producer (id, category, times, tags, map-entry
#: framing) stay far below this; ``max_event_bytes`` adds it, so it refuses only padding (unknown fields).
EVENT_FIXED_BYTES = 16 * 1024
#: Room in an envelope for its header and the per-event ingest stamps, on top of target + one event.
_ENVELOPE_SLACK = 64 * 1024


class FrontendConfig(BaseModel):
    """Everything ``logpipe serve`` needs. Sizes are bytes, durations seconds unless the name says otherwise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # --- where to listen and how to announce it
    host: str = "127.0.0.1"
    port: int = Field(default=50051, ge=0, le=65535)
    port_file: Path | None = None
    instance_id: str = ""
    # --- the cloud side
    project: str = "logpipe-local"
    pubsub_emulator_host: str | None = None
    catalog: Path | None = None
    state_dir: Path = Path(".logpipe")
    # --- validation limits
    max_payload_bytes: int = Field(default=1 * MIB, ge=1, le=8 * MIB)
    max_attributes: int = Field(default=32, ge=0)
    max_attributes_bytes: int = Field(default=8192, ge=0)
    max_producer_chars: int = Field(default=256, ge=0)
    max_events_per_request: int = Field(default=10_000, ge=1)
    event_time_future_s: float = Field(default=3600.0, ge=0)
    event_time_past_s: float = Field(default=7 * 86400.0, ge=0)
    # --- gRPC server bounds
    max_receive_message_bytes: int = Field(default=16 * MIB, ge=1024)
    max_concurrent_rpcs: int = Field(default=256, ge=1)
    #: gRPC handler threads; default = max_concurrent_rpcs, so idle streams can never starve other RPCs of threads.
    workers: int | None = Field(default=None, ge=1)
    #: Freed memory glibc keeps for reuse (M_TRIM_THRESHOLD), with every block up to 32 MiB taken from the heap
    #: (M_MMAP_THRESHOLD), so 1 MiB requests and 2 MiB envelopes stop page-faulting fresh memory in; 0 = glibc's
    #: defaults. See docs/ingest.md ("Throughput work, second pass").
    malloc_keep_mib: int = Field(default=256, ge=0, le=4096)
    #: Python's GIL switch interval for this process (``sys.setswitchinterval``; Python's default is 5 ms).
    gil_switch_interval_ms: float = Field(default=50.0, gt=0, le=1000)
    # --- envelopes
    envelope_target_bytes: int = Field(default=2 * MIB, ge=1024, le=8 * MIB)
    #: An open batch is sealed at most this long after its first event. 500 ms, not 50: each sealed envelope becomes a
    #: Pub/Sub message and a staging object, so at low rates per (category, hour) a short bound floods GCS with tiny
    #: objects (docs/ingest.md, "Envelope latency"). High rates seal by bytes long before.
    envelope_max_latency_ms: float = Field(default=500.0, ge=0)
    #: zstd level; negative levels (zstd's "fast" levels) trade ratio for speed. Every level makes a standard zstd
    #: frame, so the replicator decodes them all unchanged.
    zstd_level: int = Field(default=1, ge=-7, le=19)
    # --- backpressure, publishing, spool
    max_inflight_bytes: int = Field(default=256 * MIB, ge=1024)
    retry_after_ms: int = Field(default=250, ge=1)
    #: Below the SDK's per-attempt deadline (10 s), so an outage is answered from the spool before clients time out.
    publish_timeout_s: float = Field(default=5.0, gt=0)
    spool_dir: Path | None = None
    spool_max_bytes: int = Field(default=1024 * MIB, ge=0)
    replay_interval_s: float = Field(default=1.0, gt=0)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    # --- security
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tokens_file: Path | None = None
    allow_insecure_remote: bool = False
    # --- observability
    metrics_port: int = Field(default=0, ge=0, le=65535)
    log_level: str = "INFO"

    @property
    def max_event_bytes(self) -> int:
        """The largest serialized event accepted: what the payload, attributes and producer limits allow, plus
        ``EVENT_FIXED_BYTES``. Bounds what unknown fields can add (G4), and with it every envelope's size."""
        return self.max_payload_bytes + self.max_attributes_bytes + 4 * self.max_producer_chars + EVENT_FIXED_BYTES

    @model_validator(mode="after")
    def _envelopes_fit_pubsub(self) -> FrontendConfig:
        # A batch is sealed once it reaches the target, so an envelope holds at most target + one event (+ stamps).
        worst = self.envelope_target_bytes + self.max_event_bytes + _ENVELOPE_SLACK
        if worst > MAX_MESSAGE_BYTES:
            raise ValueError(
                f"envelope_target_bytes ({self.envelope_target_bytes}) + the largest event ({self.max_event_bytes}: "
                f"max_payload_bytes + max_attributes_bytes + 4 x max_producer_chars + {EVENT_FIXED_BYTES}) must fit "
                f"a Pub/Sub message ({MAX_MESSAGE_BYTES} bytes with {_ENVELOPE_SLACK} of headroom); lower one of them"
            )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def resolved_instance_id(self) -> str:
        return self.instance_id or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def resolved_spool_dir(self) -> Path:
        """The spool directory; by default one per listening port under the state dir, so restarts find it."""
        return self.spool_dir or self.state_dir / "spool" / f"frontend-{self.port}"

    def check_security(self) -> None:
        """Refuse configurations that would serve plaintext or half-configured TLS. Raises ``ConfigError``."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be given together")
        if not self.tls and not self.allow_insecure_remote and not _is_loopback(self.host):
            raise ConfigError(
                f"refusing to serve plaintext on non-loopback host {self.host!r}: configure tls_cert/tls_key, "
                "or pass --allow-insecure-remote if a trusted proxy terminates TLS"
            )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_ALIASES = {"GOOGLE_CLOUD_PROJECT": "project", "PUBSUB_EMULATOR_HOST": "pubsub_emulator_host"}


def env_values(env: Mapping[str, str]) -> dict[str, str]:
    """The config values present in ``env`` (strings; the model converts them)."""
    out: dict[str, str] = {}
    for var, name in _ALIASES.items():
        if env.get(var):
            out[name] = env[var]
    for name in FrontendConfig.model_fields:
        value = env.get(f"LOGPIPE_{name.upper()}")
        if value is not None and value != "":
            out[name] = value
    listen = env.get("LOGPIPE_LISTEN")
    if listen:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"LOGPIPE_LISTEN={listen!r} is not host:port")
        out["host"], out["port"] = host.strip("[]"), port
    return out


def load_config(
    file: Path | None = None, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> FrontendConfig:
    """Build the config: defaults < ``file`` (YAML mapping) < ``env`` < ``overrides``. Raises ``ConfigError``."""
    merged: dict[str, Any] = {}
    if file is not None:
        try:
            data = yaml.safe_load(Path(file).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {file} must hold a mapping")
        merged.update(data)
    merged.update(env_values(env if env is not None else {}))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return FrontendConfig.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], str(e["msg"])) for e in exc.errors())
        raise ConfigError(f"invalid front-end config: {problems}") from None


def _problem(loc: tuple[int | str, ...], msg: str) -> str:
    """One validation error as a line: ``field: message``, or the message alone for a check across fields."""
    return f"{'.'.join(str(p) for p in loc)}: {msg}" if loc else msg.removeprefix("Value error, ")
