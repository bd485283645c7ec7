from __future__ import annotations

from typing import Any

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
