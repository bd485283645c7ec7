"""Step records another layer commits with rows of its own (`records.write_steps`)."""

from __future__ import annotations

import asyncio

from threadline import Engine, Registry, WorkflowContext, workflow
from threadline.engine.records import StepRow, write_steps

registry = Registry()
started: dict[str, asyncio.Event] = {}
go_on: dict[str, asyncio.Event] = {}


@workflow(registry=registry, name="paused")
async def paused(ctx: WorkflowContext) -> str:
    started["paused"].set()
    await go_on["paused"].wait()
    return "done"


async def test_step_records_commit_in_the_callers_transaction_fenced_on_the_owner(
    database_url: str,
) -> None:
    started["paused"], go_on["paused"] = asyncio.Event(), asyncio.Event()
    async with Engine(database_url, registry=registry) as engine:
        handle = await engine.start(paused)
        await started["paused"].wait()
        run_id, owner = handle.run_id, engine.worker_id
        ours: StepRow = (run_id, 1, "call", '{"text": "hi"}', None, owner)
        theirs: StepRow = (run_id, 2, "call", "null", None, owner + 1)  # not the owner
        async with engine.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("CREATE TEMP TABLE other_rows (run_id text)")
                await conn.execute("INSERT INTO other_rows VALUES ($1)", run_id)
                accepted = await write_steps(conn, [ours, theirs])
                tx = await conn.fetchval("SELECT xmin::text FROM other_rows")
            step_tx = await conn.fetch(
                "SELECT step_no, xmin::text AS tx FROM threadline.steps WHERE run_id = $1",
                run_id,
            )
            assert await write_steps(conn, []) == set()
        assert accepted == {(run_id, 1)}
        assert [(r["step_no"], r["tx"]) for r in step_tx] == [(1, tx)]  # one commit
        go_on["paused"].set()
        assert await handle.result(timeout=10) == "done"
