"""`Ledger`: writes a row per LLM call and answers cost questions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ..llm.pricing import PriceOverrides
from .record import INSERT, CallRecord, insert_args
from .reports import CostRow, cost_report


class Ledger:
    """The cost ledger on a pool of the threadline database.

    `overrides` are the price overrides and custom models (by default read once from
    `$THREADLINE_PRICES`), applied to every call this ledger prices.
    """

    def __init__(self, pool: asyncpg.Pool, *, overrides: PriceOverrides | None = None) -> None:
        self.pool = pool
        self.overrides = PriceOverrides.from_env() if overrides is None else overrides

    async def record(self, call: CallRecord) -> int:
        """Write one call; returns its row id."""
        async with self.pool.acquire() as conn:
            row_id: int = await conn.fetchval(INSERT, *insert_args(call))
        return row_id

    async def report(
        self,
        by: str = "model",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tenant: str | None = None,
    ) -> list[CostRow]:
        async with self.pool.acquire() as conn:
            return await cost_report(conn, by, since=since, until=until, tenant=tenant)

    async def calls(self, **where: Any) -> list[dict[str, Any]]:
        """Ledger rows, oldest first, filtered on column equality (e.g. `session_id="s1"`)."""
        allowed = {"tenant", "user_id", "session_id", "turn_id", "run_id", "agent", "status"}
        unknown = set(where) - allowed
        if unknown:
            raise ValueError(f"cannot filter ledger rows on {sorted(unknown)}")
        clauses = [f"{column} = ${i}" for i, column in enumerate(where, 1)]
        sql = "SELECT * FROM threadline.llm_calls"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(sql + " ORDER BY id", *where.values())
        return [dict(r) for r in rows]
