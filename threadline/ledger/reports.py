"""Cost reports: ledger rows summed by model, day, session, tenant, agent, user or provider."""

from __future__ import annotations

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
