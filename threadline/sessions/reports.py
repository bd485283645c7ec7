"""What the dashboard lists of sessions: the latest with their messages, thumbs down and
cost, and the feedback each agent's answers got."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ..db.connect import Connection
from ..ledger.reports import session_costs
from . import queries as q


@dataclass(frozen=True)
class SessionSummary:
    id: str
    agent: str
    title: str | None
    tenant: str | None
    state: str
    status: str
    updated_at: datetime
    messages: int
    thumbs_down: int
    cost: Decimal  # of its calls, from the ledger


async def recent_sessions(conn: Connection, *, limit: int = 200) -> list[SessionSummary]:
    """The sessions changed last, the latest first."""
    rows = await conn.fetch(q.RECENT_SESSIONS, limit)
    costs = await session_costs(conn, [r["id"] for r in rows])
    return [SessionSummary(**dict(r), cost=costs.get(r["id"], Decimal(0))) for r in rows]


@dataclass(frozen=True)
class AgentFeedback:
    agent: str
    up: int
    down: int


async def feedback_by_agent(conn: Connection) -> list[AgentFeedback]:
    """Thumbs up and down per agent, by the agent's name."""
    return [AgentFeedback(**dict(r)) for r in await conn.fetch(q.FEEDBACK_BY_AGENT)]
