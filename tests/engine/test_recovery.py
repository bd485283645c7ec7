"""Crash recovery with real processes: workers killed with SIGKILL, the database restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from threadline import Engine, db
from threadline.engine.store import get_run

from ..helpers import eventually, kill, spawn_worker
from .apps import crashy, executions, patient, registry

pytestmark = pytest.mark.processes

APP = "tests.engine.apps:engine"


async def status_of(engine: Engine, run_id: str) -> str:
    async with engine.pool.acquire() as conn:
        return (await get_run(conn, run_id)).status


async def test_killed_worker_run_is_finished_by_another(database_url: str, tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    first = spawn_worker(database_url, APP, log)
    async with Engine(database_url, registry=registry, worker=False) as client:
        handle = await client.start(crashy, 1, run_id="crash-1")
        await eventually(lambda: asyncio.sleep(0, "hang" in executions(log)), what="step 2")
        kill(first)
        second = spawn_worker(database_url, APP, log)
        try:
            assert await handle.result(timeout=60) == 21
        finally:
            kill(second)
        run = await client.get_run("crash-1")
    counts = {name: executions(log).count(name) for name in ("one", "hang", "three")}
    assert counts == {"one": 1, "hang": 2, "three": 1}
    assert run.recoveries == 1


async def test_sleep_and_receive_survive_restart_of_every_process(
    database_url: str, tmp_path: Path, pg_root: Path
) -> None:
    log = tmp_path / "executions.log"
    worker = spawn_worker(database_url, APP, log)
    async with Engine(database_url, registry=registry, worker=False) as client:
        await client.start(patient, 5, run_id="patient-1")

        async def asleep() -> bool:
            return await status_of(client, "patient-1") == "waiting"

        await eventually(asleep, what="the run to fall asleep")
    kill(worker)  # the run is asleep in the database; no process holds it
    await asyncio.to_thread(db.restart_embedded, pg_root)

    worker = spawn_worker(database_url, APP, log)
    try:
        async with Engine(database_url, registry=registry, worker=False) as client:

            async def waiting_for_message() -> bool:
                run = await client.get_run("patient-1")
                return run.status == "waiting" and run.waiting_topic == "go"

            await eventually(waiting_for_message, what="the run to wait for 'go'")
            kill(worker)
            worker = spawn_worker(database_url, APP, log)
            await client.send("patient-1", "go", {"from": "test"})
            handle = await client.start(patient, 5, run_id="patient-1")
            assert not handle.created
            assert await handle.result(timeout=60) == {"value": 7, "message": {"from": "test"}}
            kinds = [e.kind async for e in handle.events(follow=False)]
    finally:
        kill(worker)
    assert executions(log).count("before") == 1
    assert executions(log).count("after") == 1
    assert kinds == ["slept"]


@pytest.mark.parametrize("signal_name", ["SIGTERM"])
async def test_sigterm_drains_a_worker(database_url: str, tmp_path: Path, signal_name: str) -> None:
    import signal

    log = tmp_path / "executions.log"
    worker = spawn_worker(database_url, APP, log)
    async with Engine(database_url, registry=registry, worker=False) as client:
        handle = await client.start(patient, 1, run_id="drain-1")
        await eventually(lambda: asyncio.sleep(0, "before" in executions(log)), what="step 1")
        output = kill(worker, getattr(signal, signal_name))
        assert worker.returncode == 0, output
        assert "draining" in output
        assert await status_of(client, handle.run_id) in ("waiting", "pending")
