"""Database faults short of a restart: server processes that die under a live pool, a server
that never answers. Work goes on through them, and a failure says why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from threadline import (
    DatabaseUnavailable,
    Engine,
    Registry,
    WorkflowCancelled,
    WorkflowContext,
    db,
    step,
    workflow,
)
from threadline.db.connect import create_pool
from threadline.engine import journal
from threadline.engine.dbretry import with_db_retry
from threadline.ledger import Budgets

from ..helpers import eventually

registry = Registry()
bodies: dict[str, int] = {}


@step
async def counted(name: str, value: int) -> int:
    bodies[name] = bodies.get(name, 0) + 1
    return value


@workflow(registry=registry, name="through_faults")
async def through_faults(ctx: WorkflowContext) -> dict[str, Any]:
    first = await counted("first", 1)
    message = await ctx.receive("go", timeout=60)
    second = await counted("second", 2)
    return {"sum": first + second, "message": message}


# Ends every server process of the test database but the asking one (as a restart would).
KILL_OTHERS = """
SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE datname = current_database() AND pid <> pg_backend_pid()) t
"""


async def kill_backends(database_url: str) -> int:
    admin = await asyncpg.connect(database_url)
    try:
        killed: int = await admin.fetchval(KILL_OTHERS)
        return killed
    finally:
        await admin.close()


async def test_a_pooled_connection_whose_server_process_died_is_retried(database_url: str) -> None:
    """Its next use raises asyncpg's InternalClientError ("cannot switch to state 12;
    another operation (2) is in progress") before the pool notices; that is transient."""
    pool = await create_pool(database_url, min_size=2, max_size=2)
    try:
        for _ in range(20):
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT 1") == 1
            assert await kill_backends(database_url) >= 1

            async def query() -> int:
                async with pool.acquire() as conn:
                    value: int = await conn.fetchval("SELECT 2")
                    return value

            assert await with_db_retry(query, what="test query", deadline=10) == 2
    finally:
        await pool.close()


async def test_a_run_goes_on_when_every_connection_of_its_worker_dies(database_url: str) -> None:
    """The journal's kept connections, the pool's and the listener all die while the run
    waits for a message: the run finishes, no step body runs twice, nothing is failed."""
    bodies.clear()
    async with Engine(database_url, registry=registry) as engine:
        handle = await engine.start(through_faults, run_id="faults-1")

        async def waiting() -> bool:
            return await handle.status() == "waiting"

        await eventually(waiting, what="the run to wait for its message")
        for _ in range(3):  # several rounds: each hits connections the last one replaced
            assert await kill_backends(database_url) >= 1
            await asyncio.sleep(0.1)
        await with_db_retry(lambda: engine.send("faults-1", "go", "now"), what="send")
        assert await handle.result(timeout=30) == {"sum": 3, "message": "now"}
        assert bodies == {"first": 1, "second": 1}
        assert await handle.status() == "succeeded"


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    yield port
    for writer in held:
        writer.close()
    server.close()


async def test_a_server_that_never_answers_is_named_with_the_reason(silent_server: int) -> None:
    url = f"postgresql://someone:secret@127.0.0.1:{silent_server}/db"
    with pytest.raises(DatabaseUnavailable) as failure:
        await create_pool(url, connect_timeout=0.3)
    message = str(failure.value)
    assert "secret" not in message
    assert message.startswith("cannot connect to PostgreSQL at ")
    assert message.endswith(": no answer within the connect timeout")


@workflow(registry=registry, name="through_an_outage")
async def through_an_outage(ctx: WorkflowContext) -> int:
    await asyncio.sleep(0.2)  # the outage starts while the run is under way
    return await counted("during", 5)


async def test_a_database_gone_past_the_retries_hands_the_run_back_not_failed(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection killed again and again for longer than the journal retries (cut to
    0.3 s here): the step's record cannot be written. The run is released, not `failed`, and
    once the database is back a worker replays it to its real result."""
    monkeypatch.setattr(journal, "with_db_retry", partial(with_db_retry, deadline=0.3))
    bodies.clear()
    admin = await asyncpg.connect(database_url)
    async with Engine(database_url, registry=registry) as engine:
        handle = await engine.start(through_an_outage, run_id="outage-1")
        until = asyncio.get_running_loop().time() + 1.5
        while asyncio.get_running_loop().time() < until:
            await admin.fetchval(KILL_OTHERS)
            await asyncio.sleep(0.01)
        await admin.close()
        assert await handle.result(timeout=30) == 5
        run = await engine.get_run("outage-1")
        assert run.status == "succeeded"
        assert bodies["during"] >= 1  # at least once: a step whose record was lost runs again


async def test_the_budget_heartbeat_outlives_connections_that_die(database_url: str) -> None:
    """Had its loop died (it caught only some database errors), the holder would stop
    heartbeating and its live calls' reservations be settled at their worst case."""
    pool = await create_pool(database_url, min_size=1, max_size=2)
    budgets = Budgets(pool, lease=0.3)
    try:
        holder = await budgets.holder()
        for _ in range(15):
            await kill_backends(database_url)
            await asyncio.sleep(0.03)

        async def beating() -> bool:
            async def beat() -> Any:
                async with pool.acquire() as conn:
                    return await conn.fetchval(
                        "SELECT now() - heartbeat_at < interval '0.2 s' "
                        "FROM threadline.budget_holders WHERE id = $1",
                        holder,
                    )

            return bool(await with_db_retry(beat, what="test query", deadline=10))

        await eventually(beating, timeout=10, what="a heartbeat after the faults")
        assert await budgets.holder() == holder  # never presumed dead
    finally:
        await budgets.close()
        await pool.close()


async def test_reads_and_cancels_go_through_connections_that_died(database_url: str) -> None:
    async with Engine(database_url, registry=registry, worker=False) as engine:
        await engine.start(through_faults, run_id="faults-read")
        for _ in range(5):
            await engine.get_run("faults-read")  # every pooled connection in use once
            assert await kill_backends(database_url) >= 1
            assert (await engine.get_run("faults-read")).status == "pending"
            assert await engine.get_steps("faults-read") == []
            assert [r.id for r in await engine.list_runs()] == ["faults-read"]
        assert await kill_backends(database_url) >= 1
        assert await engine.cancel("faults-read") == ["faults-read"]
        assert await kill_backends(database_url) >= 1
        with pytest.raises(WorkflowCancelled):
            await engine.result("faults-read", timeout=10)


gate: dict[str, asyncio.Event] = {}


@step
async def held_open(name: str) -> int:
    bodies[name] = bodies.get(name, 0) + 1
    await gate[name].wait()
    return 7


@workflow(registry=registry, name="held")
async def held(ctx: WorkflowContext) -> int:
    return await held_open("held")


@pytest.fixture(scope="module")
def own_server() -> tuple[Path, str]:
    """A server of this module's own, to restart (the tests' shared one is never restarted)."""
    root = db.temporary_data_dir("tl-restart-")
    return root, db.start_embedded(root)


@pytest.mark.processes
async def test_a_worker_whose_lock_a_restart_dropped_keeps_its_runs(
    own_server: tuple[Path, str],
) -> None:
    """A server restart drops every worker's lock at once. Until a worker takes its lock again
    (here 1 s later, as if the server took that long to accept connections), the others must
    not take it for dead: they ran its runs too, and bought their calls twice."""
    root, database_url = own_server
    bodies.clear()
    gate["held"] = asyncio.Event()
    fast = {"recover_interval": 0.05, "poll_interval": 0.05, "lease": 30.0}
    async with (
        Engine(database_url, registry=registry, **fast) as owner,
        Engine(database_url, registry=registry, **fast) as other,
    ):
        handle = await other.start(held, run_id="held-1")
        await eventually(lambda: asyncio.sleep(0, "held" in bodies), what="the step to start")
        run = await other.get_run("held-1")
        assert run.owner in (owner.worker_id, other.worker_id)
        running = owner if run.owner == owner.worker_id else other
        listener = running._notifications
        listen = listener._listen

        async def back_later() -> None:
            await asyncio.sleep(1.0)
            await listen()

        listener._listen = back_later  # type: ignore[method-assign]
        await asyncio.to_thread(db.restart_embedded, root, "immediate")
        await asyncio.sleep(1.5)  # thirty recovery passes, the owner back only after 1 s
        run = await other.get_run("held-1")
        assert (run.status, run.owner, run.recoveries) == ("running", running.worker_id, 0)
        gate["held"].set()
        assert await handle.result(timeout=20) == 7
    assert bodies == {"held": 1}


@step
async def reads_the_database(name: str) -> int:
    bodies[name] = bodies.get(name, 0) + 1
    if bodies[name] == 1:  # what a pooled connection whose server died raises on its next use
        raise asyncpg.exceptions.InternalClientError("cannot switch to state 12")
    return 3


@workflow(registry=registry, name="step_meets_a_restart")
async def step_meets_a_restart(ctx: WorkflowContext) -> int:
    return await reads_the_database("reads")


async def test_a_step_whose_database_went_away_runs_again_not_failed(database_url: str) -> None:
    """The step's own query failed because the database went away: not the step's failure.
    Nothing is recorded; the run is handed back and the step runs again."""
    bodies.clear()
    async with Engine(database_url, registry=registry, poll_interval=0.05) as engine:
        handle = await engine.start(step_meets_a_restart, run_id="meets-1")
        assert await handle.result(timeout=10) == 3
        steps = await engine.get_steps("meets-1")
    assert bodies == {"reads": 2}
    assert [(s.name, s.error) for s in steps] == [("reads_the_database", None)]
