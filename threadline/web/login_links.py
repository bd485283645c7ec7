"""Dashboard login links: `threadline serve` logs one when it made the admin key itself, so
that its owner need not read the key from its file. A link works once, for a day, whichever
process or node it reaches: the database keeps a hash of its token and when it was used."""

from __future__ import annotations

import hashlib
import secrets

import asyncpg

from . import queries


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def make(pool: asyncpg.Pool, token: str | None = None) -> str:
    """A new link's token (random unless given), stored as a hash."""
    token = token or secrets.token_urlsafe(32)
    await pool.execute(queries.MAKE_LOGIN_LINK, _hash(token))
    return token


async def redeem(pool: asyncpg.Pool, token: str) -> bool:
    """Use the link: True the first time a valid token is given, False ever after. The
    lookup is by a hash of the token (no comparison of the secret itself to time)."""
    return await pool.fetchval(queries.REDEEM_LOGIN_LINK, _hash(token)) is not None
