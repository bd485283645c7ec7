"""`Ledger`: writes a row per LLM call and answers cost questions."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import asyncpg

from ..engine.context import StepRow
from ..llm.pricing import PriceOverrides
from .budgets import DEFAULT_LEASE_S, Budgets
from .queries import CALLS
from .record import CallRecord
from .reports import CostRow, cost_report
from .writer import LedgerWriter, NoticesHook

# The columns `Ledger.calls` filters on, in the order of their parameters in `CALLS`.
_FILTERS = ("tenant", "user_id", "session_id", "turn_id", "run_id", "agent", "status")


class Ledger:
    """The cost ledger on a pool of the threadline database.

    `overrides` are the price overrides and custom models (by default read once from
    `$THREADLINE_PRICES`), applied to every call this ledger prices.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        overrides: PriceOverrides | None = None,
        lease: float = DEFAULT_LEASE_S,
    ) -> None:
        self.pool = pool
        self.overrides = PriceOverrides.from_env() if overrides is None else overrides
        self.budgets = Budgets(pool, lease=lease)
        self._writer = LedgerWriter(pool, self.budgets.dispatch)

    def submit(
        self, call: CallRecord, on_notices: NoticesHook | None = None
    ) -> asyncio.Future[None]:
        """Queue one call's row (group commit); the future resolves once it is durable.
        `on_notices` receives the budget notices its settlement caused."""
        return self._writer.submit(call, on_notices)

    def submit_with_steps(
        self, calls: list[CallRecord], steps: list[StepRow], on_notices: NoticesHook | None = None
    ) -> asyncio.Future[bool]:
        """Queue rows with workflow step records of one run, one commit for all (see
        `threadline.ledger.carrier`); the future says whether the records were accepted.
        `on_notices` receives the budget notices the rows' settlement caused."""
        return self._writer.submit_with_steps(calls, steps, on_notices)

    async def record(self, call: CallRecord) -> None:
        """Write one call's row and wait until it is durable."""
        await self._writer.submit(call)

    async def drain(self) -> None:
        """Wait until every row submitted so far is durable."""
        await self._writer.drain()

    async def close(self) -> None:
        """Write pending rows and stop holding budget reservations."""
        await self._writer.drain()
        await self.budgets.close()

    async def report(
        self,
        by: str = "model",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tenant: str | None = None,
    ) -> list[CostRow]:
        await self.drain()
        async with self.pool.acquire() as conn:
            return await cost_report(conn, by, since=since, until=until, tenant=tenant)

    async def calls(self, **where: Any) -> list[dict[str, Any]]:
        """Ledger rows, oldest first, filtered on column equality (e.g. `session_id="s1"`)."""
        unknown = set(where) - set(_FILTERS)
        if unknown:
            raise ValueError(f"cannot filter ledger rows on {sorted(unknown)}")
        args: list[Any] = []
        for column in _FILTERS:
            args += [column in where, where.get(column)]
        await self.drain()
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(CALLS, *args)
        return [dict(r) for r in rows]
