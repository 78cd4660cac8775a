"""The catalog: tiers and categories, loaded from the one YAML file that Terraform also reads.

Contract:
  * ``load_catalog(path)`` parses and validates the file once; the result is frozen. Invalid input raises
    ``CatalogError`` with a message naming the offending entry.
  * Resource names (topics, subscriptions) are derived here and nowhere else in Python; deploy/terraform derives the
    same names from the same file with the same rules (see the header of ``deploy/terraform/catalog.yaml``).
  * The default file is ``deploy/terraform/catalog.yaml`` in a source checkout, or the copy shipped in the wheel.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{2,62}$")
TIER_RE = re.compile(r"^[a-z][a-z0-9-]{1,20}$")
_REPO_DEFAULT = Path(__file__).resolve().parent.parent / "deploy" / "terraform" / "catalog.yaml"
_WHEEL_DEFAULT = Path(__file__).resolve().parent / "catalog_default.yaml"


class CatalogError(ValueError):
    """The catalog file is missing or invalid. The message says which entry and why."""


class PayloadFormat(StrEnum):
    """How the payload bytes of a category are interpreted."""

    JSON = "json"
    BYTES = "bytes"


class FileFormat(StrEnum):
    """The format of landed files in GCS."""

    AVRO = "avro"
    JSONL_GZ = "jsonl_gz"


class FieldType(StrEnum):
    """BigQuery types allowed for extracted payload fields."""

    STRING = "STRING"
    INT64 = "INT64"
    FLOAT64 = "FLOAT64"
    BOOL = "BOOL"
    TIMESTAMP = "TIMESTAMP"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PayloadField(_Frozen):
    """A typed, nullable column extracted from a top-level key of a JSON payload."""

    name: str
    type: FieldType
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,127}", v):
            raise ValueError(f"field name {v!r} must match [a-z_][a-z0-9_]*")
        return v


class Tier(_Frozen):
    """A group of categories sharing one topic, subscription and replicator deployment."""

    name: str
    description: str = ""
    ack_deadline_seconds: int = Field(default=60, ge=10, le=600)
    max_delivery_attempts: int = Field(default=100, ge=5, le=100)
    message_retention_seconds: int = Field(default=604800, ge=600, le=2678400)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TIER_RE.match(v):
            raise ValueError(f"tier name {v!r} must match {TIER_RE.pattern}")
        return v


RESERVED_COLUMNS = frozenset(
    {
        "event_id",
        "event_time",
        "ingest_time",
        "payload",
        "attributes",
        "producer",
        "client_id",
        "category",
        "envelope_id",
    }
)


class Category(_Frozen):
    """One kind of event. ``name`` is also its BigQuery table name."""

    name: str
    tier: str
    payload_format: PayloadFormat = PayloadFormat.JSON
    file_format: FileFormat = FileFormat.AVRO
    description: str = ""
    fields: tuple[PayloadField, ...] = ()
    clustering: tuple[str, ...] = ("event_id",)
    partition_expiration_days: int | None = Field(default=None, ge=1)
    #: How many shards finalize one (category, hour) partition: each commits the events whose id hashes to it, so
    #: that many workers merge one hour side by side. Fixed per partition when it is first finalized (_plan.json).
    finalize_shards: int = Field(default=1, ge=1, le=64)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"category name {v!r} must match {NAME_RE.pattern}")
        return v

    @model_validator(mode="after")
    def _columns(self) -> Category:
        names = [f.name for f in self.fields]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate fields {sorted(dupes)}")
        clash = RESERVED_COLUMNS.intersection(names)
        if clash:
            raise ValueError(f"fields {sorted(clash)} clash with built-in columns")
        if self.fields and self.payload_format is not PayloadFormat.JSON:
            raise ValueError("fields can only be extracted from json payloads")
        allowed = {"event_id", "event_time", "ingest_time", "producer", "client_id", *names}
        bad = [c for c in self.clustering if c not in allowed]
        if bad:
            raise ValueError(f"clustering columns {bad} are not columns of the table")
        if len(self.clustering) > 4:
            raise ValueError("BigQuery allows at most 4 clustering columns")
        return self


class Catalog(_Frozen):
    """All tiers and categories. Frozen; build with ``load_catalog``."""

    name_prefix: str = "logpipe"
    dataset: str = "logpipe"
    tiers: tuple[Tier, ...]
    categories: tuple[Category, ...]

    @model_validator(mode="after")
    def _refs(self) -> Catalog:
        tier_names = [t.name for t in self.tiers]
        if len(set(tier_names)) != len(tier_names):
            raise ValueError("tier names must be unique")
        cat_names = [c.name for c in self.categories]
        if len(set(cat_names)) != len(cat_names):
            raise ValueError("category names must be unique")
        for c in self.categories:
            if c.tier not in tier_names:
                raise ValueError(f"category {c.name!r} names unknown tier {c.tier!r}")
        return self

    # --- lookups -------------------------------------------------------------------------------------------------
    def category(self, name: str) -> Category:
        """The category called ``name``. Raises ``KeyError`` when it is not configured."""
        for c in self.categories:
            if c.name == name:
                return c
        raise KeyError(name)

    def tier(self, name: str) -> Tier:
        """The tier called ``name``. Raises ``KeyError`` when it is not configured."""
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    def categories_in(self, tier: str) -> tuple[Category, ...]:
        """Categories routed through ``tier``."""
        return tuple(c for c in self.categories if c.tier == tier)

    @property
    def by_name(self) -> Mapping[str, Category]:
        return {c.name: c for c in self.categories}

    # --- resource names (Terraform derives the same) -------------------------------------------------------------
    def topic(self, tier: str) -> str:
        return f"{self.name_prefix}-{tier}"

    def subscription(self, tier: str) -> str:
        return f"{self.name_prefix}-{tier}-replicator"

    def dead_letter_topic(self, tier: str) -> str:
        return f"{self.name_prefix}-{tier}-dead-letter"

    def dead_letter_subscription(self, tier: str) -> str:
        return f"{self.name_prefix}-{tier}-dead-letter-sub"


def default_catalog_path() -> Path:
    """The catalog used when none is configured: the repo's file, else the copy inside the installed wheel."""
    return _REPO_DEFAULT if _REPO_DEFAULT.exists() else _WHEEL_DEFAULT


def parse_catalog(data: Any, source: str = "<catalog>") -> Catalog:
    """Validate already-parsed YAML/JSON data. Raises ``CatalogError``."""
    if not isinstance(data, dict):
        raise CatalogError(f"{source}: expected a mapping with 'tiers' and 'categories'")
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise CatalogError(f"{source}: {problems}") from None


def load_catalog(path: Path | str | None = None) -> Catalog:
    """Read and validate the catalog at ``path`` (default: ``default_catalog_path()``). Raises ``CatalogError``."""
    p = Path(path) if path is not None else default_catalog_path()
    try:
        text = p.read_text()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {p}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{p}: not valid YAML: {exc}") from None
    return parse_catalog(data, str(p))
