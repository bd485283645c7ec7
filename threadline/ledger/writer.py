"""Group commit for ledger rows: every row queued while a write is in flight goes in the next
one, as one transaction, so many concurrent calls cost one commit.

A row that settles a budget reservation is written in the same transaction as the settlement.
If recovery settled that reservation first (its process was presumed dead), the row recovery
wrote stands for the call and this one is dropped: one row and one charge per reservation.

A workflow step's rows can come with the step's record (`submit_with_steps`, see
`threadline.ledger.carrier`): both commit in one transaction, the rows written here, the record
by the engine (`threadline.engine.records.write_steps`), fenced like the journal's records (the
record only if the run is still this worker's; the rows whatever happens, the money was
spent). A row that settles a reservation settles it in that transaction too, so a crash leaves
either the row, the settlement and the record, or none of them (then the reservation is
recovered and the replay buys the call again, once). The budget notices such a settlement causes
are appended to the step's output (a JSON object) under `events`, which its caller emits after
the step: a replay emits them too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from ..engine.dbretry import with_db_retry
from ..engine.records import StepRow, write_steps
from .outcomes import BudgetNotice, Settled, events_json
from .queries import INSERT_CALL_WITH_STEPS as INSERT_WITH_STEPS
from .record import INSERT, CallRecord, insert_args
from .reservations import settle

log = logging.getLogger(__name__)

NoticesHook = Callable[[Sequence[BudgetNotice]], None]
Entry = tuple[CallRecord, "asyncio.Future[None]", NoticesHook | None]
# Rows with step records of one run (the step's, after read-only ones riding with it), and who
# hears the notices their settlement caused.
Bundle = tuple[list[CallRecord], list[StepRow], "asyncio.Future[bool]", NoticesHook | None]


class LedgerWriter:
    def __init__(
        self,
        pool: asyncpg.Pool,
        on_notices: Callable[[Sequence[BudgetNotice]], Awaitable[None]] | None = None,
    ) -> None:
        self._pool = pool
        self._on_notices = on_notices
        self._queue: list[Entry] = []
        self._bundles: list[Bundle] = []
        self._task: asyncio.Task[None] | None = None

    def submit(
        self, call: CallRecord, on_notices: NoticesHook | None = None
    ) -> asyncio.Future[None]:
        """Queue a row; the future resolves once it is committed. `on_notices` is then given
        the budget notices (50/80/100 % warnings, overshoots) its settlement caused."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_observe)  # failures are logged here; awaiting is optional
        self._queue.append((call, fut, on_notices))
        self._start()
        return fut

    def submit_with_steps(
        self,
        calls: list[CallRecord],
        steps: list[StepRow],
        on_notices: NoticesHook | None = None,
    ) -> asyncio.Future[bool]:
        """Queue rows with step records of one run, committed together; the future says
        whether the records were accepted (the run is still its owner's). Rows that settle a
        reservation settle it in that commit; `on_notices` then hears what that caused (the
        last record's output, a JSON object, carries them under `events` too)."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_observe)
        self._bundles.append((calls, steps, fut, on_notices))
        self._start()
        return fut

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def drain(self) -> None:
        """Wait until every row queued so far is written (or has failed)."""
        while self._task is not None:
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        try:
            while self._queue or self._bundles:
                batch, self._queue = self._queue, []
                bundles, self._bundles = self._bundles, []
                try:
                    settled, accepted = await with_db_retry(
                        functools.partial(self._write, batch, bundles), what="ledger write"
                    )
                except Exception as exc:
                    rows = len(batch) + sum(len(b[0]) for b in bundles)
                    log.error("could not write %d ledger rows: %s", rows, exc)
                    for fut in [e[1] for e in batch] + [b[2] for b in bundles]:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for calls, steps, done, hook in bundles:
                    if hook is not None:
                        hook(_notices_of(calls, settled))
                    if not done.done():
                        done.set_result(all((step[0], step[1]) in accepted for step in steps))
                for call, fut, on_notices in batch:
                    if on_notices is not None:
                        on_notices(settled.notices.get(call.reservation_id or 0, []))
                    if not fut.done():
                        fut.set_result(None)
                if self._on_notices is not None and settled.notices:
                    await self._on_notices(settled.all_notices())
        finally:
            self._task = None

    async def _write(
        self, batch: list[Entry], bundles: list[Bundle]
    ) -> tuple[Settled, set[tuple[str, int]]]:
        calls = [call for call, _, _ in batch] + [call for b in bundles for call in b[0]]
        reserved = [call for call in calls if call.reservation_id is not None]
        async with self._pool.acquire() as conn:
            if not reserved and not bundles:
                await conn.executemany(INSERT, [insert_args(call) for call in calls])
                return Settled(), set()
            if not reserved and not batch and len(bundles) == 1 and len(bundles[0][0]) == 1:
                # A step with its one row and nothing to settle: one statement.
                records = [list(column) for column in zip(*bundles[0][1], strict=True)]
                written = await conn.fetch(INSERT_WITH_STEPS, *insert_args(calls[0]), *records)
                return Settled(), {(row["run_id"], row["step_no"]) for row in written}
            async with conn.transaction():
                settled = Settled()
                if reserved:
                    settled = await settle(
                        conn,
                        [call.reservation_id for call in reserved if call.reservation_id],
                        [call.cost_usd for call in reserved],
                    )
                rows = [
                    insert_args(call)
                    for call in calls
                    if call.reservation_id is None or call.reservation_id in settled.reservations
                ]
                if rows:
                    await conn.executemany(INSERT, rows)
                steps = [
                    step
                    for carried, records, _, _ in bundles
                    for step in _with_notices(records, _notices_of(carried, settled))
                ]
                accepted = await write_steps(conn, steps)  # the engine's table, its own SQL
        return settled, accepted


def _notices_of(calls: Sequence[CallRecord], settled: Settled) -> list[BudgetNotice]:
    found = settled.notices
    return [
        n for c in calls if c.reservation_id is not None for n in found.get(c.reservation_id, ())
    ]


def _with_notices(steps: list[StepRow], notices: list[BudgetNotice]) -> list[StepRow]:
    """The step's records, its own (the last) with `notices` appended to its output's events."""
    *riding, (run_id, step_no, name, output, error, owner) = steps
    if not notices or output is None:
        return steps
    value = json.loads(output)
    value["events"] = [*value.get("events", ()), *events_json(notices)]
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return [*riding, (run_id, step_no, name, text, error, owner)]


def _observe(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
