"""What users make of a conversation: a thumbs up or down per answer (with an optional
comment), its title, and deleting it. The dashboard lists the feedback."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..db.connect import Connection
from ..errors import ConfigurationError
from . import queries as q
from .store import UnknownSession
from .text import check_text

RATINGS = {"up": 1, "down": -1}
MAX_COMMENT = 2000
MAX_TITLE = 200


@dataclass(frozen=True)
class Feedback:
    session_id: str
    turn_id: str
    rating: str  # "up" or "down"
    comment: str | None
    agent: str
    tenant: str | None
    at: datetime
    answer: str | None = None  # the answer rated, for the dashboard

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


async def rate(
    conn: Connection, session_id: str, turn_id: str, rating: str | None, comment: str | None
) -> None:
    """Record (or change, or with `rating=None` take back) the user's rating of one answer.
    Only answers the session has can be rated."""
    if rating is None:
        await conn.execute(q.DELETE_FEEDBACK, session_id, turn_id)
        return
    if rating not in RATINGS:
        raise ConfigurationError(f"a rating is 'up' or 'down', not {rating!r}")
    if comment is not None:
        check_text(comment, "the comment")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise ConfigurationError(f"a comment has at most {MAX_COMMENT} characters")
    done = await conn.fetchval(q.RATE, session_id, turn_id, RATINGS[rating], comment or None)
    if done is None:
        raise UnknownSession(f"session {session_id!r} has no answer {turn_id!r}")


async def ratings(conn: Connection, session_id: str) -> dict[str, str]:
    """turn id → "up"/"down": how the user rated the session's answers."""
    rows = await conn.fetch(q.RATINGS, session_id)
    return {r["turn_id"]: "up" if r["rating"] > 0 else "down" for r in rows}


async def recent(conn: Connection, *, limit: int = 100) -> list[Feedback]:
    """The newest feedback, with the answers rated."""
    rows = await conn.fetch(q.FEEDBACK_RECENT, limit)
    return [Feedback(**{**dict(r), "rating": "up" if r["rating"] > 0 else "down"}) for r in rows]


async def rename(conn: Connection, session_id: str, title: str) -> None:
    title = " ".join(check_text(title, "the title").split())[:MAX_TITLE]
    if not title:
        raise ConfigurationError("a title cannot be empty")
    done = await conn.fetchval(q.RENAME, session_id, title)
    if done is None:
        raise UnknownSession(f"no session with id {session_id!r}")


async def delete(conn: Connection, session_id: str) -> None:
    """Delete the session with its messages, events and feedback (its ledger rows stay: they
    are the bill)."""
    done = await conn.fetchval(q.DELETE_SESSION, session_id)
    if done is None:
        raise UnknownSession(f"no session with id {session_id!r}")
