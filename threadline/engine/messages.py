"""Writes that reach a run from outside it: a message delivered, a tree of runs cancelled.

Each locks the run's row before looking at it, as a run about to wait does (`waits.py`): a
message cannot slip between a receiver's check and its suspension.
"""

from __future__ import annotations

import json

from ..db.connect import Connection
from ..errors import ThreadlineError, UnknownRun
from . import queries
from .runs import TERMINAL

__all__ = ["cancel_tree", "deliver"]


async def deliver(
    conn: Connection, run_id: str, topic: str, body: str, idempotency_key: str | None
) -> bool:
    """Store a message for the run, in the caller's transaction; wake the run if it waits on
    `topic` (True then)."""
    status = await conn.fetchval(queries.LOCK_RUN, run_id)
    if status is None:
        raise UnknownRun(f"no run with id {run_id!r}")
    if status in TERMINAL:
        raise ThreadlineError(f"run {run_id!r} has already {status}")
    await conn.execute(queries.INSERT_MESSAGE, run_id, topic, body, idempotency_key)
    woke = await conn.fetchval(queries.WAKE_FOR_TOPIC, run_id, topic)
    if woke == "pending" and status == "waiting":
        await conn.execute(queries.NOTIFY_WORK)
        return True
    return False


async def cancel_tree(conn: Connection, run_id: str) -> list[str]:
    """Cancel the run and its descendants, in the caller's transaction; returns the ids that
    were still unfinished. Parents outside the tree that wait for one of them wake up."""
    rows = await conn.fetch(queries.CANCEL_TREE, run_id)
    if not rows and await conn.fetchval(queries.LOCK_RUN, run_id) is None:
        raise UnknownRun(f"no run with id {run_id!r}")
    ids = [r["id"] for r in rows]
    for row in rows:
        if row["parent_id"] and row["parent_id"] not in ids:
            await conn.fetchval(queries.WAKE_FOR_TOPIC, row["parent_id"], f"child:{row['id']}")
    if ids:
        await conn.execute(queries.NOTIFY_CANCELLED, json.dumps(ids))
    return ids
