"""Group commit for ledger rows: every row queued while a write is in flight goes in the next
one, as one transaction, so many concurrent calls cost one commit."""

from __future__ import annotations

import asyncio
import functools
import logging

import asyncpg

from ..engine.dbretry import with_db_retry
from .record import INSERT, CallRecord, insert_args

log = logging.getLogger(__name__)


class LedgerWriter:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._queue: list[tuple[CallRecord, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, call: CallRecord) -> asyncio.Future[None]:
        """Queue a row; the future resolves once it is committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_observe)  # failures are logged here; awaiting is optional
        self._queue.append((call, fut))
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
                    await with_db_retry(functools.partial(self._write, batch), what="ledger write")
                except Exception as exc:
                    log.error("could not write %d ledger rows: %s", len(batch), exc)
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._task = None

    async def _write(self, batch: list[tuple[CallRecord, asyncio.Future[None]]]) -> None:
        async with self._pool.acquire() as conn:
            await conn.executemany(INSERT, [insert_args(call) for call, _ in batch])


def _observe(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()
