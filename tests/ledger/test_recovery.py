"""A worker killed between two LLM calls: the recovered run buys only the missing call."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from threadline import Engine
from threadline.ledger import Ledger

from ..helpers import eventually, kill, spawn_worker
from ..llm.servers.base import ProviderServer
from .apps import registry, two_calls

pytestmark = pytest.mark.processes

APP = "tests.ledger.apps:engine"


@pytest.mark.parametrize("limit", [None, Decimal(100)], ids=["no budget", "budget set"])
async def test_a_recovered_workflow_does_not_buy_a_call_twice(
    database_url: str, tmp_path: Path, servers: dict[str, ProviderServer], limit: Decimal | None
) -> None:
    """Under a budget too: a call's row, its reservation's settlement and its step's record
    are one commit, so no crash leaves a bought call whose step would run again."""
    api = servers["openai"]
    api.script.reset()
    api.script.reply(text="First answer.", input_tokens=40, output_tokens=3)
    api.script.reply(text="Second answer.", input_tokens=60, output_tokens=3)
    env = {"THREADLINE_TEST_OPENAI_URL": api.url + "/v1"}
    log = tmp_path / "log"
    paused = Path(str(log) + ".paused")
    first = spawn_worker(database_url, APP, log, env)
    async with Engine(database_url, registry=registry, worker=False) as client:
        if limit is not None:
            await Ledger(client.pool).budgets.set("tenant:acme", usd=limit)
        handle = await client.start(two_calls, "What is it?", run_id="two-calls")
        await eventually(lambda: asyncio.sleep(0, paused.exists()), what="the first call")
        kill(first)
        second = spawn_worker(database_url, APP, log, env)
        try:
            assert await handle.result(timeout=60) == ["First answer.", "Second answer."]
        finally:
            kill(second)
        rows = await Ledger(client.pool).calls(run_id="two-calls")
        async with client.pool.acquire() as conn:
            apart = await conn.fetchval(
                "SELECT count(*) FROM threadline.llm_calls c JOIN threadline.steps s "
                "ON s.run_id = c.run_id AND s.step_no = c.step_no "
                "WHERE c.run_id = 'two-calls' AND c.xmin <> s.xmin"
            )
            usage = await conn.fetchrow(
                "SELECT spent_usd, reserved_usd FROM threadline.budget_usage "
                "WHERE scope_kind = 'tenant' AND scope_key = 'acme'"
            )
    assert apart == 0  # each call's row committed with its step's record
    assert len(api.script.requests) == 2
    assert [(r["input_tokens"], r["status"]) for r in rows] == [(40, "ok"), (60, "ok")]
    assert [r["step_no"] for r in rows] == [1, 3]
    assert all(r["session_id"] == "crash-session" for r in rows)
    if limit is None:
        assert usage is None and all(r["reservation_id"] is None for r in rows)
    else:  # each call reserved and settled at its cost, nothing left held
        assert all(r["reservation_id"] is not None for r in rows)
        assert usage["reserved_usd"] == 0
        assert usage["spent_usd"] == sum(r["cost_usd"] for r in rows) > 0
