"""A workflow that makes two routed calls, run by worker subprocesses in the crash test. The
Anthropic test server's URL comes in $THREADLINE_TEST_ANTHROPIC_URL; budget holders heartbeat
on the lease in $THREADLINE_BUDGET_LEASE."""

from __future__ import annotations

import os

from threadline import Engine, Registry, WorkflowContext, workflow
from threadline.ledger import Budget, Scope
from threadline.llm import Message
from threadline.router import ModelPolicy, Models

registry = Registry()
router = Models(
    model_options={
        "anthropic": {
            "api_key": "k",
            "base_url": os.environ.get("THREADLINE_TEST_ANTHROPIC_URL"),
        }
    }
)
POLICY = ModelPolicy("anthropic:claude-haiku-4-5")


@workflow(registry=registry, name="two_routed_calls")
@Budget(usd=1.00)
async def two_routed_calls(ctx: WorkflowContext, question: str) -> list[str]:
    scope = Scope(tenant="acme")
    first = await router.request(POLICY, [Message.user(question)], scope=scope, max_tokens=300)
    second = await router.request(
        POLICY,
        [Message.user(question), first.message, Message.user("and?")],
        scope=scope,
        max_tokens=300,
    )
    return [first.text, second.text]


engine = Engine(registry=registry, poll_interval=0.2, recover_interval=0.2)
