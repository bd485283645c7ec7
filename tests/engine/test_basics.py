from __future__ import annotations

from typing import Any

import pytest

from threadline import Engine, Registry, WorkflowContext, step, workflow

registry = Registry()
calls: dict[str, int] = {}


@step
async def add_one(x: int) -> int:
    calls["add_one"] = calls.get("add_one", 0) + 1
    return x + 1


@workflow(registry=registry, name="three_steps")
async def three_steps(ctx: WorkflowContext, x: int) -> dict[str, Any]:
    a = await add_one(x)
    b = await ctx.step(add_one, a)
    c = await add_one(b)
    await ctx.emit("done", {"c": c})
    return {"result": c}


async def test_three_steps_run_and_are_journaled(database_url: str) -> None:
    async with Engine(database_url, registry=registry) as engine:
        handle = await engine.start(three_steps, 1)
        assert await handle.result(timeout=10) == {"result": 4}
        steps = await engine.get_steps(handle.run_id)
        assert [s.output for s in steps] == [2, 3, 4]
        events = [e async for e in handle.events()]
        assert [(e.seq, e.kind, e.data) for e in events] == [(1, "done", {"c": 4})]


@workflow(registry=registry, name="plain_three_steps")
async def plain_three_steps(ctx: WorkflowContext, x: int) -> int:
    return await add_one(await add_one(await add_one(x)))


async def test_a_run_of_three_steps_takes_three_commits(database_url: str) -> None:
    """The run's insert shares a commit with its first step, the last step with the outcome;
    each step is still durable before the next one's body runs."""
    async with Engine(database_url, registry=registry) as engine:
        await (await engine.start(plain_three_steps, 0)).result(timeout=10)  # warm up
        before = engine.journal.flushes
        calls.clear()
        handle = await engine.start(plain_three_steps, 10)
        assert await handle.result(timeout=10) == 13
        assert engine.journal.flushes - before == 3
        assert calls["add_one"] == 3
        assert [s.output for s in await engine.get_steps(handle.run_id)] == [11, 12, 13]


class CountingPool:
    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.acquired = 0

    def acquire(self) -> Any:
        self.acquired += 1
        return self.pool.acquire()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)


async def test_the_result_of_a_run_finished_here_needs_no_query(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's NOTIFY may wake `result` before the local worker hands over the outcome; the
    outcome is then kept in memory, not fetched again."""
    async with Engine(database_url, registry=registry) as engine:
        handle = await engine.start(plain_three_steps, 1)
        assert await handle.result(timeout=10) == 4
        pool = CountingPool(engine.pool)
        with monkeypatch.context() as patch:
            patch.setattr(engine, "_pool", pool)
            assert await handle.result(timeout=10) == 4
        assert pool.acquired == 0


async def test_a_step_body_waits_for_the_previous_record(database_url: str) -> None:
    """When step 2 starts, step 1's record is already in the database."""
    seen: list[int] = []

    @step(name="look")
    async def look(run_id: str) -> int:
        async with engine.pool.acquire() as conn:
            n = await conn.fetchval(
                "SELECT count(*) FROM threadline.steps WHERE run_id = $1", run_id
            )
        seen.append(n)
        return int(n)

    @workflow(registry=registry, name="looking")
    async def looking(ctx: WorkflowContext) -> list[int]:
        return [await look(ctx.run_id), await look(ctx.run_id), await look(ctx.run_id)]

    async with Engine(database_url, registry=registry) as engine:
        handle = await engine.start(looking)
        assert await handle.result(timeout=10) == [0, 1, 2]
