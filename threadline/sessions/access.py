"""Who may open a session: the generation its tokens must carry (revoking them moves it on)
and the tenant it belongs to, read with one primary-key lookup per request."""

from __future__ import annotations

from dataclasses import dataclass

from ..db.connect import Connection
from . import queries as q
from .store import UnknownSession

__all__ = ["Access", "access", "revoke_tokens"]


@dataclass(frozen=True)
class Access:
    tenant: str | None
    token_generation: int


async def access(conn: Connection, session_id: str) -> Access:
    row = await conn.fetchrow(q.GET_ACCESS, session_id)
    if row is None:
        raise UnknownSession(f"no session with id {session_id!r}")
    return Access(row["tenant"], row["token_generation"])


async def revoke_tokens(conn: Connection, session_id: str) -> int:
    """Refuse every token issued for the session so far; the new generation."""
    generation = await conn.fetchval(q.REVOKE_TOKENS, session_id)
    if generation is None:
        raise UnknownSession(f"no session with id {session_id!r}")
    return int(generation)
