"""A workflow that makes two LLM calls, run by worker subprocesses in the crash test. The
OpenAI-compatible test server's URL comes in $THREADLINE_TEST_OPENAI_URL."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from threadline import Engine, Registry, WorkflowContext, step, workflow
from threadline.ledger import Scope
from threadline.llm import Message
from threadline.router import Models

registry = Registry()
llm = Models(
    model_options={
        "openai": {"api_key": "test-key", "base_url": os.environ.get("THREADLINE_TEST_OPENAI_URL")}
    }
)


@step
async def pause_first_time() -> None:
    """On its first execution ever, hangs until the test kills the process."""
    marker = Path(os.environ["THREADLINE_TEST_LOG"] + ".paused")
    if not marker.exists():
        marker.write_text("x")
        await asyncio.sleep(120)


@workflow(registry=registry, name="two_calls")
async def two_calls(ctx: WorkflowContext, question: str) -> list[str]:
    scope = Scope(session="crash-session", tenant="acme")
    first = await llm.request("openai:gpt-4o-mini", [Message.user(question)], scope=scope)
    await pause_first_time()
    second = await llm.request(
        "openai:gpt-4o-mini",
        [Message.user(question), first.message, Message.user("and?")],
        scope=scope,
    )
    return [first.text, second.text]


engine = Engine(registry=registry, poll_interval=0.2, recover_interval=0.2)
