"""Routed calls inside workflows: one journaled step each, decisions in the run's event log, and
`BudgetExceeded` failing its step without a retry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from threadline import Engine, Registry, RetryPolicy, WorkflowContext, WorkflowFailed, workflow
from threadline.engine.store import get_steps
from threadline.ledger import Budget, BudgetExceeded, Ledger, MeteredModel, Scope
from threadline.llm import Message
from threadline.router import ModelPolicy, Models

from ..llm.servers.base import ProviderServer, Script
from .conftest import model_options

pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated")

SONNET, MINI = "anthropic:claude-sonnet-4-5", "openai:gpt-4o-mini"
registry = Registry()
routers: dict[str, Models] = {}


@workflow(registry=registry, name="answer")
@Budget(usd="0.02")
async def answer(ctx: WorkflowContext, question: str) -> dict[str, Any]:
    policy = ModelPolicy(MINI, fallback=[SONNET])
    reply = await routers["r"].request(policy, [Message.user(question)], scope=Scope(user="ann"))
    return {"text": reply.text, "model": reply.used_model, "max_tokens": reply.max_tokens}


@workflow(registry=registry, name="too_poor")
@Budget(usd="0.000001")
async def too_poor(ctx: WorkflowContext, catch: bool) -> dict[str, Any]:
    try:
        await routers["r"].request(ModelPolicy(SONNET, fallback=[MINI]), [Message.user("Hi")])
    except BudgetExceeded as exc:
        if not catch:
            raise
        return exc.to_json()
    return {}


@workflow(registry=registry, name="unbudgeted")
async def unbudgeted(ctx: WorkflowContext, question: str) -> str:
    asked: str = await ctx.step(str.strip, question, name="read", read_only=True)
    policy = ModelPolicy(MINI, fallback=[SONNET])
    return (await routers["r"].request(policy, [Message.user(asked)])).text


@pytest.fixture
async def engine(
    database_url: str, servers: dict[str, ProviderServer], scripts: dict[str, Script]
) -> AsyncIterator[Engine]:
    retry = RetryPolicy(max_attempts=3, initial_delay=0.01)
    routers["r"] = Models(model_options=model_options(servers), step_retry=retry)
    async with Engine(database_url, registry=registry) as engine:
        yield engine
    await routers.pop("r").aclose()


async def test_a_routed_call_is_one_step_and_its_decisions_are_events(
    engine: Engine, scripts: dict[str, Script]
) -> None:
    scripts["openai"].reply(error="rate_limited", retry_after="5")
    scripts["anthropic"].reply(text="Forty-two.", input_tokens=20, output_tokens=800)
    handle = await engine.start(answer, "What is the answer?", run_id="wf-1")
    result = await handle.result(timeout=30)
    assert result["text"] == "Forty-two." and result["model"] == SONNET
    assert result["max_tokens"] < 1024  # lowered to what the run's $0.02 affords on Sonnet
    events = [(e.kind, e.data) async for e in handle.events(follow=False)]
    assert events[0] == ("model.fallback", {"from": MINI, "to": SONNET, "reason": "rate_limited"})
    capped = {"model": SONNET, "max_tokens": result["max_tokens"], "requested_max_tokens": 1024}
    assert events[1] == ("budget.capped", capped)
    kind, warning = events[2]
    assert (kind, warning["scope"], warning["threshold"]) == ("budget.update", "run:wf-1", 50)
    assert warning["percent"] == 60  # $0.01206 of $0.02 spent
    assert len(events) == 3
    async with engine.pool.acquire() as conn:
        (step,) = await get_steps(conn, "wf-1")
    assert step.name == f"route:{MINI}" and step.output["response"]["route"]["attempts"] == 2
    # A replay emits the same events: the notice of the answer's settlement is in the record.
    kinds = [e["kind"] for e in step.output["events"]]
    assert kinds == ["model.fallback", "budget.capped", "budget.update"]
    calls = await Ledger(engine.pool).calls(run_id="wf-1")
    assert [(r["step_no"], r["user_id"], r["fallback_reason"]) for r in calls] == [
        (1, "ann", None),
        (1, "ann", "rate_limited"),
    ]


@pytest.mark.parametrize("catch", [True, False])
async def test_budget_exceeded_fails_the_step_without_a_retry(
    engine: Engine, scripts: dict[str, Script], catch: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = routers["r"]
    admitted: list[str] = []
    admit = MeteredModel.admit

    async def counting_admit(model: MeteredModel, *args: Any, **kwargs: Any) -> Any:
        admitted.append(model.spec)
        return await admit(model, *args, **kwargs)

    monkeypatch.setattr(MeteredModel, "admit", counting_admit)
    heard: list[Any] = []
    router.on_event = heard.append
    handle = await engine.start(too_poor, catch, run_id=f"poor-{catch}")
    if catch:
        refused = await handle.result(timeout=30)
        assert (refused["scope"], refused["limit_usd"], refused["model"]) == (
            f"run:poor-{catch}",
            "0.000001",
            MINI,
        )
    else:
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=30)
        assert caught.value.error_type == "BudgetExceeded"
    assert admitted == [SONNET, MINI]  # one try of the chain: the step was not retried
    assert scripts["anthropic"].requests == scripts["openai"].requests == []
    async with engine.pool.acquire() as conn:
        (step,) = await get_steps(conn, f"poor-{catch}")
    assert step.error["type"] == "BudgetExceeded"
    # The failed step journals its error, so the run's log has the refusal; the decisions
    # before it were heard live.
    events = [(e.kind, e.data) async for e in handle.events(follow=False)]
    assert events == [
        ("budget.exceeded", BudgetExceeded.from_message(step.error["message"]).to_json())
    ]  # type: ignore[union-attr]
    assert [e.to_json() for e in heard] == [{"from": SONNET, "to": MINI, "reason": "budget"}]


async def test_a_routed_steps_ledger_rows_commit_with_its_record(
    engine: Engine, scripts: dict[str, Script]
) -> None:
    # One call alone (its row and record in one statement), then one that falls back (two
    # rows) beside three more at once (several steps in one write).
    scripts["openai"].reply(text="One.")
    await (await engine.start(unbudgeted, "Q0", run_id="plain-0")).result(timeout=30)
    scripts["openai"].reply(error="server_error")
    scripts["anthropic"].reply(text="Two.")
    scripts["openai"].reply(text="Three.")
    handles = [await engine.start(unbudgeted, f"Q{n}", run_id=f"plain-{n}") for n in range(1, 5)]
    for handle in handles:
        await handle.result(timeout=30)
    async with engine.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.run_id, c.step_no, c.xmin::text AS row_tx, s.xmin::text AS step_tx "
            "FROM threadline.llm_calls c JOIN threadline.steps s "
            "ON s.run_id = c.run_id AND s.step_no = c.step_no "
            "WHERE c.run_id LIKE 'plain-%' ORDER BY c.run_id, c.id"
        )
    runs = [r["run_id"] for r in rows]
    assert sorted(runs.count(f"plain-{n}") for n in range(5)) == [1, 1, 1, 1, 2]  # one fell back
    assert all(r["row_tx"] == r["step_tx"] for r in rows)  # committed together
    async with engine.pool.acquire() as conn:
        reads = await conn.fetch(
            "SELECT r.xmin::text AS read_tx, s.xmin::text AS step_tx FROM threadline.steps r"
            " JOIN threadline.steps s ON s.run_id = r.run_id AND s.step_no = 2"
            " WHERE r.run_id LIKE 'plain-%' AND r.step_no = 1"
        )
    # Each run's read-only step rode with the routed step's record, in the same commit.
    assert len(reads) == 5 and all(r["read_tx"] == r["step_tx"] for r in reads)
