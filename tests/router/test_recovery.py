"""A worker killed in the middle of a routed call: the run resumes on another worker without
buying its finished call again, and the interrupted call's reservation is settled once, at its
worst case."""

from __future__ import annotations

from decimal import Decimal

import pytest

from threadline import Engine
from threadline.ledger import Ledger

from ..helpers import eventually, kill, spawn_worker
from ..llm.servers.base import ProviderServer, Script
from .apps import registry, two_routed_calls

pytestmark = pytest.mark.processes

APP = "tests.router.apps:engine"


async def open_reservations(engine: Engine) -> int:
    async with engine.pool.acquire() as conn:
        found: int = await conn.fetchval("SELECT count(*) FROM threadline.budget_reservations")
    return found


async def test_a_call_cut_by_a_crash_is_settled_at_worst_case_and_never_twice(
    database_url: str, servers: dict[str, ProviderServer], scripts: dict[str, Script]
) -> None:
    api = scripts["anthropic"]
    api.reply(text="First answer.", input_tokens=20, output_tokens=5)
    api.reply(text="Never delivered.", delay=2.0)  # the worker dies while this call waits
    api.reply(text="Second answer.", input_tokens=40, output_tokens=6)
    env = {
        "THREADLINE_TEST_ANTHROPIC_URL": servers["anthropic"].url,
        "THREADLINE_BUDGET_LEASE": "0.6",
    }
    first = spawn_worker(database_url, APP, extra_env=env)
    async with Engine(database_url, registry=registry, worker=False) as client:
        handle = await client.start(two_routed_calls, "What is it?", run_id="routed")

        async def second_call_in_flight() -> bool:
            return len(api.requests) == 2 and await open_reservations(client) == 1

        async def no_open_reservations() -> bool:
            return await open_reservations(client) == 0

        await eventually(second_call_in_flight, what="the second call")
        kill(first)
        second = spawn_worker(database_url, APP, extra_env=env)
        try:
            assert await handle.result(timeout=60) == ["First answer.", "Second answer."]
            await eventually(no_open_reservations, what="recovery of the reservation")
        finally:
            kill(second)
        ledger = Ledger(client.pool)
        rows = await ledger.calls(run_id="routed")
        states = {s.scope: s for s in await ledger.budgets.list() if s.period == "total"}
    assert len(api.requests) == 3  # the finished first call was not bought again
    assert [(r["step_no"], r["status"], r["error_code"]) for r in rows] == [
        (1, "ok", None),
        (2, "error", "interrupted"),
        (2, "ok", None),
    ]
    interrupted = rows[1]
    assert interrupted["cost_usd"] == interrupted["reserved_usd"] > rows[2]["cost_usd"]
    assert interrupted["output_tokens"] == 300 and interrupted["estimated"]
    total = sum((r["cost_usd"] for r in rows), Decimal(0))
    run = states["run:routed"]  # the workflow's declared Budget(usd=1.00)
    assert (run.spent_usd, run.reserved_usd, run.calls, run.limit_usd) == (total, 0, 3, 1)
