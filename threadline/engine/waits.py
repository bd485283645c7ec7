"""A run that waits in the database: for a timer, a message or a child run.

Each wait records its step, or parks the run (`waiting`, with a wake time or a topic, its
coroutine dropped: `Suspended`), in one transaction under the run's row lock, which whoever
wakes it takes too: a message or a child's end cannot slip between the check and the
suspension. The run must still be this worker's (`RunLost` otherwise).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import UnknownRun
from . import queries
from .interrupts import RunLost, Suspended
from .records import Recorded
from .runs import TERMINAL
from .serialization import loads

if TYPE_CHECKING:
    from ..db.connect import Connection
    from .context import WorkflowContext
    from .engine import Engine

__all__ = ["child_or_suspend", "receive_or_suspend", "suspend", "utc"]


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


async def _own(conn: Connection, engine: Engine, ctx: WorkflowContext) -> None:
    """Lock the run's row, which must still be this worker's."""
    if await conn.fetchval(queries.LOCK_OWN_RUN, ctx.run_id, engine.worker_id) is None:
        raise RunLost


async def _park(
    conn: Connection,
    engine: Engine,
    ctx: WorkflowContext,
    step_no: int,
    wake_at: float | None,
    topic: str | None,
) -> None:
    at = None if wake_at is None else utc(wake_at)
    await conn.execute(queries.SUSPEND, ctx.run_id, engine.worker_id, at, topic, step_no)


async def suspend(
    engine: Engine,
    ctx: WorkflowContext,
    step_no: int,
    name: str | None,
    output: str | None,
    *,
    wake_at: float | None,
    topic: str | None,
) -> None:
    """Record `name` (if given) and park the run until `wake_at` or a wake-up on `topic`."""
    async with engine.pool.acquire() as conn, conn.transaction():
        await _own(conn, engine, ctx)
        if name is not None:
            await conn.execute(queries.INSERT_STEP, ctx.run_id, step_no, name, output, None)
        await _park(conn, engine, ctx, step_no, wake_at, topic)
    if wake_at is not None and engine.worker is not None:
        engine.worker.note_wake(wake_at)
    raise Suspended


async def receive_or_suspend(
    engine: Engine, ctx: WorkflowContext, step_no: int, topic: str, deadline: float | None
) -> Any:
    """The next message on `topic` (None once `deadline` has passed), recorded; else the run
    waits for one."""
    name = f"receive:{topic}"
    async with engine.pool.acquire() as conn, conn.transaction():
        await _own(conn, engine, ctx)
        payload = await conn.fetchval(queries.CONSUME_MESSAGE, ctx.run_id, topic)
        timed_out = payload is None and deadline is not None and deadline <= time.time()
        if payload is not None or timed_out:
            output = "null" if payload is None else f"[{payload}]"
            await conn.execute(queries.INSERT_STEP, ctx.run_id, step_no, name, output, None)
        else:
            await _park(conn, engine, ctx, step_no, deadline, topic)
    if payload is None and not timed_out:
        if deadline is not None and engine.worker is not None:
            engine.worker.note_wake(deadline)
        raise Suspended
    return None if payload is None else loads(payload)


async def child_or_suspend(
    engine: Engine, ctx: WorkflowContext, step_no: int, child_id: str
) -> Recorded:
    """The child run's outcome, recorded; else the run waits for the child to end."""
    name = f"wait:{child_id}"
    async with engine.pool.acquire() as conn, conn.transaction():
        await _own(conn, engine, ctx)
        row = await conn.fetchrow(queries.CHILD_OUTCOME, child_id)
        if row is None:
            raise UnknownRun(f"no child run with id {child_id!r}")
        done = row["status"] in TERMINAL
        if done:
            outcome = {
                "status": row["status"],
                "output": loads(row["output"]),
                "error": loads(row["error"]),
            }
            output = json.dumps(outcome)
            await conn.execute(queries.INSERT_STEP, ctx.run_id, step_no, name, output, None)
        else:
            await _park(conn, engine, ctx, step_no, None, f"child:{child_id}")
    if not done:
        raise Suspended
    return Recorded(name, output, None)
