"""Cost reports: ledger rows summed by model, day, session, tenant, agent, user or provider;
the totals of every row (the dashboard's overview, the metrics), and the cost of sessions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from ..db.connect import Connection
from ..errors import ConfigurationError

# What each `by` groups on; the key is shown as text.
GROUPINGS = {
    "model": "provider || ':' || model",
    "provider": "provider",
    "day": "to_char(date_trunc('day', at AT TIME ZONE 'UTC'), 'YYYY-MM-DD')",
    "session": "coalesce(session_id, '(none)')",
    "tenant": "coalesce(tenant, '(none)')",
    "agent": "coalesce(agent, '(none)')",
    "user": "coalesce(user_id, '(none)')",
    "run": "coalesce(run_id, '(none)')",
}


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
    key = GROUPINGS.get(by)
    if key is None:
        raise ConfigurationError(
            f"cannot group costs by {by!r}; choose from {', '.join(GROUPINGS)}"
        )
    rows = await conn.fetch(
        f"""
        SELECT {key} AS key, count(*) AS calls,
               count(*) FILTER (WHERE status = 'error') AS errors,
               count(*) FILTER (WHERE status = 'cached') AS cached,
               coalesce(sum(input_tokens), 0) AS input_tokens,
               coalesce(sum(output_tokens), 0) AS output_tokens,
               coalesce(sum(cost_usd), 0) AS cost_usd,
               coalesce(sum(saved_usd), 0) AS saved_usd,
               count(*) FILTER (WHERE NOT priced) AS unpriced_calls,
               count(*) FILTER (WHERE estimated) AS estimated_calls
        FROM threadline.llm_calls
        WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::timestamptz IS NULL OR at < $2)
          AND ($3::text IS NULL OR tenant = $3)
        GROUP BY 1 ORDER BY cost_usd DESC, key
        """,
        since,
        until,
        tenant,
    )
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


_CALL_TOTALS = """
SELECT count(*) AS calls,
       coalesce(sum(cost_usd), 0) AS cost,
       coalesce(sum(saved_usd), 0) AS saved,
       coalesce(sum(cost_usd) FILTER (WHERE at >= date_trunc('day', now())), 0) AS today,
       count(*) FILTER (WHERE status = 'cached') AS cached,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE fallback_reason IS NOT NULL) AS fallbacks
FROM threadline.llm_calls
"""


async def call_totals(conn: Connection) -> CallTotals:
    row = await conn.fetchrow(_CALL_TOTALS)
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


# A scan of every call, acceptable while llm_calls is modest; a large ledger wants running
# totals kept at write time instead.
_USAGE_TOTALS = """
SELECT coalesce(sum(input_tokens) FILTER (WHERE status <> 'cached'), 0) AS input_tokens,
       coalesce(sum(output_tokens) FILTER (WHERE status <> 'cached'), 0) AS output_tokens,
       coalesce(sum(cost_usd), 0) AS spend,
       coalesce(sum(cost_usd) FILTER (
           WHERE at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), 0
       ) AS today,
       count(*) FILTER (WHERE status = 'cached') AS cache_hits
FROM threadline.llm_calls
"""


async def usage_totals(conn: Connection) -> UsageTotals:
    row = await conn.fetchrow(_USAGE_TOTALS)
    assert row is not None  # an aggregate without GROUP BY: always one row
    return UsageTotals(**dict(row))


async def session_costs(conn: Connection, session_ids: Sequence[str]) -> dict[str, Decimal]:
    """The cost of each of these sessions' calls (a session without calls is left out)."""
    rows = await conn.fetch(
        """
        SELECT session_id, coalesce(sum(cost_usd), 0) AS cost FROM threadline.llm_calls
        WHERE session_id = ANY($1::text[]) GROUP BY session_id
        """,
        list(session_ids),
    )
    return {r["session_id"]: r["cost"] for r in rows}
