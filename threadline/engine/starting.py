"""Where a new run is written and where it starts running.

A run of a limited queue started where the worker has room is inserted and, when its queue
lets it, claimed here in one statement (ADR 0017). Any other run goes to the journal: owned
by this worker when it has room (it runs at once, and a run with a fresh random id runs even
before its insert commits, so that its first step's record shares that commit: ADR 0002), or
`pending` for any worker to claim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import queries
from .context import WorkflowContext
from .dbretry import with_db_retry
from .registry import Workflow
from .runs import RunHandle

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["start_run"]


async def start_run(
    engine: Engine,
    wf: Workflow,
    run_id: str,
    input_json: str,
    *,
    fresh: bool,
    queue: str,
    queue_key: str | None,
    parent_id: str | None,
) -> RunHandle:
    """Insert the run (idempotent on `run_id`) and start it here if this worker may.
    `fresh`: the id was made up just now, so no run can have it yet."""
    q = engine.queues.get(queue)
    worker = engine.worker
    if q is not None and q.limited and worker is not None and worker.try_reserve():
        try:
            created, launched = await worker.start_here(
                q, wf, run_id, input_json, queue_key=queue_key, parent_id=parent_id
            )
        finally:
            worker.unreserve()
        if not created and not launched and run_id not in worker.active:
            await _adopt_if_orphaned(engine, run_id)
            worker.wakeup.set()
        return RunHandle(engine, run_id, created)
    owned = worker is not None and (q is None or not q.limited) and worker.try_reserve()
    reserved = owned
    try:
        write = engine.journal.add_run(
            run_id,
            wf.name,
            engine.version,
            input_json,
            queue=queue,
            queue_key=queue_key,
            parent_id=parent_id,
            owned=owned,
        )
        early = owned and fresh and worker is not None
        if early and worker is not None:
            # A fresh random id cannot exist yet: run at once, so the first step's record
            # can share the commit of the run's insert (see ADR 0002).
            ctx = WorkflowContext(engine, run_id, wf.name)
            ctx.created = ctx.last_write = write
            worker.launch(wf, input_json, ctx)
            worker.unreserve()  # the launched run now counts as active
            reserved = False
        created = await write
    finally:
        if reserved and worker is not None:
            worker.unreserve()
    if created and owned and not early and worker is not None:
        worker.launch(wf, input_json, WorkflowContext(engine, run_id, wf.name))
    elif not created and worker is not None and run_id not in worker.active:
        await _adopt_if_orphaned(engine, run_id)
    return RunHandle(engine, run_id, created)


async def _adopt_if_orphaned(engine: Engine, run_id: str) -> None:
    # A retried insert can find its own earlier write: a run owned by us that nobody runs.
    async def release() -> None:
        async with engine.pool.acquire() as conn:
            await conn.execute(queries.RELEASE, run_id, engine.worker_id)

    await with_db_retry(release, what="release run")
