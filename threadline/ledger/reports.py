"""Cost reports: ledger rows summed by model, day, session, tenant, agent, user or provider;
the totals of every row (the dashboard's overview, the metrics), and the cost of sessions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ..db.connect import Connection
from ..errors import ConfigurationError
from . import queries
from .queries import GROUPINGS


@dataclass(frozen=True)
class CostRow:
    key: str
    calls: int
    errors: int
    cached: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    saved_usd: Decimal
    unpriced_calls: int  # calls whose model has no price: their cost is unknown, not zero
    estimated_calls: int


async def cost_report(
    conn: Connection,
    by: str = "model",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    tenant: str | None = None,
) -> list[CostRow]:
    """Totals per `by` key, most expensive first."""
    if by not in GROUPINGS:
        raise ConfigurationError(
            f"cannot group costs by {by!r}; choose from {', '.join(GROUPINGS)}"
        )
    rows = await conn.fetch(queries.COST_REPORTS[by], since, until, tenant)
    return [CostRow(**dict(r)) for r in rows]


@dataclass(frozen=True)
class CallTotals:
    """Every call in the ledger, summed. `today`: since midnight in the database's time
    zone."""

    calls: int
    cost: Decimal
    saved: Decimal
    today: Decimal
    cached: int
    errors: int
    fallbacks: int


async def call_totals(conn: Connection) -> CallTotals:
    row = await conn.fetchrow(queries.CALL_TOTALS)
    assert row is not None  # an aggregate without GROUP BY: always one row
    return CallTotals(**dict(row))


@dataclass(frozen=True)
class UsageTotals:
    """Tokens and spend of every call in the ledger. Tokens leave out cache hits: no model
    read or wrote them this time. `today`: the UTC day, as daily budgets count it."""

    input_tokens: int
    output_tokens: int
    spend: Decimal
    today: Decimal
    cache_hits: int


async def usage_totals(conn: Connection) -> UsageTotals:
    row = await conn.fetchrow(queries.USAGE_TOTALS)
    assert row is not None  # an aggregate without GROUP BY: always one row
    return UsageTotals(**dict(row))


async def session_costs(conn: Connection, session_ids: Sequence[str]) -> dict[str, Decimal]:
    """The cost of each of these sessions' calls (a session without calls is left out)."""
    rows = await conn.fetch(queries.SESSION_COSTS, list(session_ids))
    return {r["session_id"]: r["cost"] for r in rows}
