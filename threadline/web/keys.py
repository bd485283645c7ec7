"""API keys for a site's backend: each belongs to one tenant and creates sessions for that
tenant's signed-in users (the browser never names a tenant or a user). A key is shown once,
when it is made; the database keeps its SHA-256 (a key is 32 random bytes: a slow hash would
add nothing) and its first characters, to find it and to show in lists. Revoked keys stay
listed, refused."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from ..errors import ConfigurationError
from . import queries

__all__ = ["KEY_PREFIX", "ApiKey", "ApiKeys"]

KEY_PREFIX = "tlk_"
_PREFIX_LENGTH = len(KEY_PREFIX) + 8  # "tlk_" and 8 characters of the key's random part
_LAST_USE_EVERY_S = 60  # `last_used_at` is written at most once a minute per key


@dataclass(frozen=True)
class ApiKey:
    id: int
    tenant: str
    name: str
    prefix: str  # "tlk_Ab3dE9xY": the key's first characters
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


class ApiKeys:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, tenant: str, name: str = "") -> tuple[ApiKey, str]:
        """A new key of `tenant`: its record and the key itself, which is never shown again."""
        if not tenant or len(tenant) > 200 or len(name) > 200:
            raise ConfigurationError("a key needs a tenant (and a name) of 1 to 200 characters")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self.pool.acquire() as conn:
            prefix = key[:_PREFIX_LENGTH]
            row = await conn.fetchrow(queries.CREATE_KEY, tenant, name, prefix, _hash(key))
        assert row is not None
        return _key(row), key

    async def verify(self, key: str) -> ApiKey | None:
        """The key's record if `key` is a live key, else None (unknown, wrong or revoked)."""
        if not key.startswith(KEY_PREFIX) or len(key) > 100:
            return None
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(queries.FIND_KEY, key[:_PREFIX_LENGTH])
            if row is None or not hmac.compare_digest(row["key_hash"], _hash(key)):
                return None
            if row["revoked_at"] is not None:
                return None
            await conn.execute(queries.KEY_USED, row["id"], _LAST_USE_EVERY_S)
        return _key(row)

    async def list(self, tenant: str | None = None) -> list[ApiKey]:
        async with self.pool.acquire() as conn:
            return [_key(r) for r in await conn.fetch(queries.LIST_KEYS, tenant)]

    async def revoke(self, key_id_or_prefix: str) -> ApiKey | None:
        """Revoke a key by its id or prefix; None when no live key has it."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(queries.REVOKE_KEY, key_id_or_prefix)
        return _key(row) if row is not None else None


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        row["id"],
        row["tenant"],
        row["name"],
        row["prefix"],
        row["created_at"],
        row["last_used_at"],
        row["revoked_at"],
    )
