"""Bearer tokens -> client identities, each allowed a set of categories.

Tokens file (YAML)::

    clients:
      - id: checkout-api                 # becomes Event.client_id
        token_sha256: 9f86d081...        # preferred: hex sha256 of the token
        categories: [ads_click, login_event]
      - id: dev-laptop
        token: plain-secret              # accepted, discouraged
        categories: ["*"]                # every category

Contract: ``authenticate`` takes the gRPC metadata and returns an ``Identity`` or raises ``AuthError``. Tokens are
compared by their sha256 digest; neither tokens nor digests appear in errors or logs. With no tokens file, every
caller is the anonymous identity allowed every category.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from service.frontend.errors import AuthError, ConfigError


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling. ``categories`` None means every category."""

    client_id: str
    categories: frozenset[str] | None

    def allows(self, category: str) -> bool:
        return self.categories is None or category in self.categories


ANONYMOUS = Identity("anonymous", None)


class Authenticator:
    """Maps bearer tokens to identities. ``None`` table = auth disabled."""

    def __init__(self, by_digest: dict[str, Identity] | None) -> None:
        self._by_digest = by_digest

    @property
    def enabled(self) -> bool:
        return self._by_digest is not None

    def authenticate(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Identity:
        """The caller's identity. Raises ``AuthError`` for a missing, malformed or unknown token."""
        if self._by_digest is None:
            return ANONYMOUS
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if header is None:
            raise AuthError("missing authorization metadata (expected 'Bearer <token>')")
        value = header.decode("latin-1") if isinstance(header, bytes) else header
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("authorization metadata must be 'Bearer <token>'")
        identity = self._by_digest.get(hashlib.sha256(token.strip().encode()).hexdigest())
        if identity is None:
            raise AuthError("unknown bearer token")
        return identity


def load_tokens(path: Path | None) -> Authenticator:
    """Read the tokens file (see module doc); ``None`` disables auth. Raises ``ConfigError``."""
    if path is None:
        return Authenticator(None)
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read tokens file {path}: {exc.__class__.__name__}") from None
    clients = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(clients, list) or not clients:
        raise ConfigError(f"tokens file {path} must have a non-empty 'clients' list")
    table: dict[str, Identity] = {}
    for i, c in enumerate(clients):
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not c["id"]:
            raise ConfigError(f"tokens file {path}: clients[{i}] needs an 'id'")
        if "token_sha256" in c:
            digest = str(c["token_sha256"]).lower()
            if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
                raise ConfigError(f"tokens file {path}: clients[{i}] token_sha256 is not 64 hex digits")
        elif isinstance(c.get("token"), str) and c["token"]:
            digest = hashlib.sha256(c["token"].encode()).hexdigest()
        else:
            raise ConfigError(f"tokens file {path}: clients[{i}] needs 'token_sha256' or 'token'")
        cats = c.get("categories", [])
        if not isinstance(cats, list) or not all(isinstance(x, str) for x in cats):
            raise ConfigError(f"tokens file {path}: clients[{i}] categories must be a list of names")
        if digest in table:
            raise ConfigError(f"tokens file {path}: clients[{i}] repeats another client's token")
        table[digest] = Identity(c["id"], None if "*" in cats else frozenset(cats))
    return Authenticator(table)
