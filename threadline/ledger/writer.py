"""Group commit for ledger rows: every row queued while a write is in flight goes in the next
one, as one transaction, so many concurrent calls cost one commit.

A row that settles a budget reservation is written in the same transaction as the settlement.
If recovery settled that reservation first (its process was presumed dead), the row recovery
wrote stands for the call and this one is dropped: one row and one charge per reservation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from ..engine.dbretry import with_db_retry
from .outcomes import BudgetNotice, Settled
from .record import INSERT, CallRecord, insert_args
from .reservations import settle

log = logging.getLogger(__name__)

NoticesHook = Callable[[Sequence[BudgetNotice]], None]
Entry = tuple[CallRecord, "asyncio.Future[None]", NoticesHook | None]


class LedgerWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        on_notices: Callable[[Sequence[BudgetNotice]], Awaitable[None]] | None = None,
    ) -> None:
        self._pool = pool
        self._on_notices = on_notices
        self._queue: list[Entry] = []
        self._task: asyncio.Task[None] | None = None

    def submit(
        self, call: CallRecord, on_notices: NoticesHook | None = None
    ) -> asyncio.Future[None]:
        """Queue a row; the future resolves once it is committed. `on_notices` is then given
        the budget notices (50/80/100 % warnings, overshoots) its settlement caused."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_observe)  # failures are logged here; awaiting is optional
        self._queue.append((call, fut, on_notices))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return fut

    async def drain(self) -> None:
        """Wait until every row queued so far is written (or has failed)."""
        while self._task is not None:
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    settled = await with_db_retry(
                        functools.partial(self._write, batch), what="ledger write"
                    )
                except Exception as exc:
                    log.error("could not write %d ledger rows: %s", len(batch), exc)
                    for _, fut, _ in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for call, fut, on_notices in batch:
                    if on_notices is not None:
                        on_notices(settled.notices.get(call.reservation_id or 0, []))
                    if not fut.done():
                        fut.set_result(None)
                if self._on_notices is not None and settled.notices:
                    await self._on_notices(settled.all_notices())
        finally:
            self._task = None

    async def _write(self, batch: list[Entry]) -> Settled:
        reserved = [call for call, _, _ in batch if call.reservation_id is not None]
        async with self._pool.acquire() as conn:
            if not reserved:
                await conn.executemany(INSERT, [insert_args(call) for call, _, _ in batch])
                return Settled()
            async with conn.transaction():
                settled = await settle(
                    conn,
                    [call.reservation_id for call in reserved if call.reservation_id],
                    [call.cost_usd for call in reserved],
                )
                rows = [
                    insert_args(call)
                    for call, _, _ in batch
                    if call.reservation_id is None or call.reservation_id in settled.reservations
                ]
                if rows:
                    await conn.executemany(INSERT, rows)
        return settled


def _observe(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()
