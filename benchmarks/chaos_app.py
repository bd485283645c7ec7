"""The app `benchmarks/chaos.py` runs while it kills processes: `threadline worker --app
benchmarks.chaos_app:engine` (from the repository root; `benchmarks` is a namespace package).

- `chaos.order`, a workflow of five steps: three plain bodies (`gather`, `check`, `finish`)
  and two model calls to the offline demo model, one routed (a `ModelPolicy` through
  `Models.request`) and one plain (a model name), both streamed so that they take time and a
  kill can land inside them. The calls are under the tenant's budget (`threadline budgets
  set tenant:chaos ...`) and the workflow's own `Budget(usd=...)`, so each reserves its worst
  case first.
- Every execution of a body is written to `chaos.step_executions` (run, step number, pid,
  the time) before it works: the benchmark compares those rows with `threadline.steps` to
  find bodies that ran again after their record had committed.
- The demo bots' turns (`threadline.demo.AGENTS`, what `threadline serve` serves by default)
  are registered too, so these workers also run chat turns: a turn held by a killed server
  resumes on a worker, as a turn held by a killed worker does on the server.

The processes share one code version through `THREADLINE_APP_VERSION` (set by the
benchmark), so the server's worker and these claim each other's turns.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from threadline import (
    Budget,
    Engine,
    ModelPolicy,
    Models,
    Registry,
    Scope,
    WorkflowContext,
    workflow,
)
from threadline.demo import AGENTS
from threadline.llm import Message
from threadline.sessions import Sessions

MODEL = "demo:threadline-demo"
TENANT = "chaos"
WORKFLOW = "chaos.order"
RUN_BUDGET_USD = 0.50  # per run: far above what a run costs, so no call is refused
STEP_SECONDS = 0.15  # what a body "works" after writing its execution row

EXECUTIONS_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS chaos;
CREATE TABLE IF NOT EXISTS chaos.step_executions (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id  text NOT NULL,
    step_no integer NOT NULL,
    name    text NOT NULL,
    pid     integer NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS step_executions_run ON chaos.step_executions (run_id, step_no);
"""

registry = Registry()
engine = Engine(registry=registry)
Sessions(engine, AGENTS)  # the turns of `threadline serve`'s demo bots run here too
llm = Models()  # inside a workflow it finds the engine's database

CONTEXT = (
    "You are the order desk of a small workshop. Context:\n## Orders\n"
    "Order {n} ships {k} blue widgets to Lyon. Each widget weighs 2 kg. "
    "Lyon is served by the north depot on Tuesdays and Fridays. "
    "Orders above 10 kg travel by the heavy van, which leaves at dawn."
)


async def _ignore(_: Any) -> None:
    """Streaming makes the demo model take time (its pace), so kills land mid-call."""


async def _execute(run_id: str, step_no: int, name: str, n: int) -> int:
    async with engine.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO chaos.step_executions (run_id, step_no, name, pid)"
            " VALUES ($1, $2, $3, $4)",
            run_id,
            step_no,
            name,
            os.getpid(),
        )
    await asyncio.sleep(STEP_SECONDS)
    return n * 10 + step_no


async def _body(ctx: WorkflowContext, name: str, n: int) -> int:
    # The body is told its own step number: the next durable operation's.
    result: int = await ctx.step(_execute, ctx.run_id, ctx.step_no + 1, name, n, name=name)
    return result


@workflow(registry=registry, name=WORKFLOW)
@Budget(usd=RUN_BUDGET_USD)
async def order(ctx: WorkflowContext, n: int) -> dict[str, Any]:
    scope = Scope(tenant=TENANT, user=f"buyer-{n % 7}")
    prompt = [Message.system(CONTEXT.format(n=n, k=n % 9 + 1))]
    gathered = await _body(ctx, "gather", n)
    first = await llm.request(
        ModelPolicy(MODEL),
        [*prompt, Message.user(f"Where does order {n} go?")],
        scope=scope,
        max_tokens=300,
        on_delta=_ignore,
    )
    checked = await _body(ctx, "check", n)
    second = await llm.request(
        MODEL,
        [*prompt, Message.user(f"When does order {n} leave, and by which van?")],
        scope=scope,
        max_tokens=300,
        on_delta=_ignore,
    )
    finished = await _body(ctx, "finish", n)
    return {
        "n": n,
        "bodies": [gathered, checked, finished],
        "words": len(first.text.split()) + len(second.text.split()),
    }
