"""Durable-execution semantics, in process: journal, replay, retries, waits, children,
cancellation, queues, events, idempotency and the errors for bad input."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from threadline import (
    Engine,
    NonDeterminismError,
    NotSerializable,
    PayloadTooLarge,
    Queue,
    Registry,
    RetryPolicy,
    StepError,
    ThreadlineError,
    UnknownRun,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowContext,
    WorkflowFailed,
    step,
    workflow,
)

from ..helpers import eventually

reg = Registry()
counts: dict[str, int] = {}


def bump(name: str) -> int:
    counts[name] = counts.get(name, 0) + 1
    return counts[name]


@pytest.fixture(autouse=True)
def _reset_counts() -> None:
    counts.clear()


@step
async def counted(name: str, value: Any) -> Any:
    bump(name)
    return value


@workflow(registry=reg, name="idempotent")
async def idempotent(ctx: WorkflowContext, x: int) -> int:
    return int(await counted("idem", x)) * 2


async def test_start_twice_with_one_run_id_gives_one_run(database_url: str) -> None:
    async with Engine(database_url, registry=reg) as engine:
        first = await engine.start(idempotent, 4, run_id="same")
        second = await engine.start(idempotent, 4, run_id="same")
        assert (first.created, second.created) == (True, False)
        assert await first.result(10) == await second.result(10) == 8
        assert counts["idem"] == 1
        assert len(await engine.list_runs(workflow="idempotent")) == 1


@workflow(registry=reg, name="waits_for_go")
async def waits_for_go(ctx: WorkflowContext) -> Any:
    await counted("before-go", 1)
    message = await ctx.receive("go", timeout=60)
    await counted("after-go", 1)
    return message


async def test_recorded_steps_are_not_rerun_when_a_run_resumes(database_url: str) -> None:
    async with Engine(database_url, registry=reg) as engine:
        handle = await engine.start(waits_for_go)

        async def waiting() -> bool:
            return (await engine.get_run(handle.run_id)).status == "waiting"

        await eventually(waiting)
        assert handle.run_id not in engine.worker.active  # type: ignore[union-attr]
        await engine.send(handle.run_id, "go", {"n": 1})
        assert await handle.result(10) == {"n": 1}
    assert counts == {"before-go": 1, "after-go": 1}


@workflow(registry=reg, name="receive_timeout")
async def receive_timeout(ctx: WorkflowContext) -> Any:
    return {"got": await ctx.receive("never", timeout=0.3)}


async def test_receive_times_out_with_none(database_url: str) -> None:
    async with Engine(database_url, registry=reg, poll_interval=0.1) as engine:
        handle = await engine.start(receive_timeout)
        assert await handle.result(10) == {"got": None}


@workflow(registry=reg, name="messages_in_order")
async def messages_in_order(ctx: WorkflowContext, n: int) -> list[Any]:
    return [await ctx.receive("q", timeout=30) for _ in range(n)]


async def test_messages_sent_before_receive_wait_in_the_mailbox_in_order(database_url: str) -> None:
    async with Engine(database_url, registry=reg, worker=False) as client:
        handle = await client.start(messages_in_order, 3, run_id="mailbox")
        for i in range(3):
            await client.send("mailbox", "q", i)
        await client.send("mailbox", "q", 0, idempotency_key="dup")
        await client.send("mailbox", "q", 0, idempotency_key="dup")  # ignored: same key
    async with Engine(database_url, registry=reg) as engine:
        assert await engine.result(handle.run_id, 10) == [0, 1, 2]


async def test_send_to_unknown_or_finished_run_is_a_clear_error(database_url: str) -> None:
    async with Engine(database_url, registry=reg) as engine:
        with pytest.raises(UnknownRun):
            await engine.send("no-such-run", "go", 1)
        handle = await engine.start(idempotent, 1)
        await handle.result(10)
        with pytest.raises(ThreadlineError, match="already succeeded"):
            await engine.send(handle.run_id, "go", 1)


@workflow(registry=reg, name="sleeper")
async def sleeper(ctx: WorkflowContext, seconds: float) -> float:
    started = await ctx.step(time.time, name="clock")
    await ctx.sleep(seconds)
    await counted("after-sleep", 1)
    return float(started)


async def test_durable_sleep_holds_no_coroutine(database_url: str) -> None:
    async with Engine(database_url, registry=reg, poll_interval=0.1) as engine:
        handle = await engine.start(sleeper, 0.5)

        async def asleep() -> bool:
            return (await engine.get_run(handle.run_id)).status == "waiting"

        await eventually(asleep)
        assert not engine.worker.active  # type: ignore[union-attr]
        started = await handle.result(10)
        assert time.time() - started >= 0.5
    assert counts["after-sleep"] == 1


attempts: list[float] = []


@step(
    retry=RetryPolicy(max_attempts=4, initial_delay=0.01, retry_on=lambda e: isinstance(e, OSError))
)
async def flaky(fail_times: int) -> str:
    attempts.append(time.monotonic())
    if len(attempts) <= fail_times:
        raise OSError(f"attempt {len(attempts)} failed")
    return "ok"


@workflow(registry=reg, name="retrying")
async def retrying(ctx: WorkflowContext, fail_times: int) -> str:
    return str(await flaky(fail_times))


async def test_step_retries_until_success(database_url: str) -> None:
    attempts.clear()
    async with Engine(database_url, registry=reg) as engine:
        assert await (await engine.start(retrying, 3)).result(10) == "ok"
    assert len(attempts) == 4


async def test_step_fails_after_max_attempts_and_the_failure_is_journaled(
    database_url: str,
) -> None:
    attempts.clear()
    async with Engine(database_url, registry=reg) as engine:
        handle = await engine.start(retrying, 10)
        with pytest.raises(WorkflowFailed) as failure:
            await handle.result(10)
        assert failure.value.error_type == "StepError"
        [recorded] = await engine.get_steps(handle.run_id)
        assert recorded.error == {"type": "OSError", "message": "attempt 4 failed"}
    assert len(attempts) == 4


@step(retry=RetryPolicy(max_attempts=5, initial_delay=0.01, retry_on=lambda e: False))
async def not_retryable() -> None:
    attempts.append(0)
    raise ValueError("bad input")


@workflow(registry=reg, name="no_retry")
async def no_retry(ctx: WorkflowContext) -> str:
    try:
        await not_retryable()
    except StepError as exc:
        return f"caught {exc.error_type}"
    return "unreachable"


async def test_retry_on_predicate_and_catching_step_errors(database_url: str) -> None:
    attempts.clear()
    async with Engine(database_url, registry=reg) as engine:
        assert await (await engine.start(no_retry)).result(10) == "caught ValueError"
    assert attempts == [0]


@workflow(registry=reg, name="slow_step")
async def slow_step(ctx: WorkflowContext) -> None:
    await ctx.step(asyncio.sleep, 5, name="slow", timeout=0.1)


async def test_step_timeout(database_url: str) -> None:
    async with Engine(database_url, registry=reg) as engine:
        with pytest.raises(WorkflowFailed, match="TimeoutError"):
            await (await engine.start(slow_step)).result(10)


class Opaque:
    pass


@workflow(registry=reg, name="bad_result")
async def bad_result(ctx: WorkflowContext) -> None:
    await ctx.step(lambda: Opaque(), name="opaque")


@workflow(registry=reg, name="big_result")
async def big_result(ctx: WorkflowContext) -> None:
    await ctx.step(lambda: "x" * 5000, name="big")


async def test_unserialisable_and_oversized_results_fail_the_run_clearly(database_url: str) -> None:
    async with Engine(database_url, registry=reg, max_payload=1000) as engine:
        with pytest.raises(WorkflowFailed) as failure:
            await (await engine.start(bad_result)).result(10)
        assert failure.value.error_type == "NotSerializable"
        assert "opaque" in failure.value.message
        with pytest.raises(WorkflowFailed) as failure:
            await (await engine.start(big_result)).result(10)
        assert failure.value.error_type == "PayloadTooLarge"
        with pytest.raises(PayloadTooLarge):
            await engine.start(idempotent, "y" * 2000)
        with pytest.raises(NotSerializable):
            await engine.start(idempotent, Opaque())
        with pytest.raises(PayloadTooLarge):
            await engine.send((await engine.start(waits_for_go)).run_id, "go", "z" * 2000)


async def test_unknown_workflow_is_a_clear_error(database_url: str) -> None:
    async with Engine(database_url, registry=reg) as engine:
        with pytest.raises(UnknownWorkflow, match="no workflow named 'nope'"):
            await engine.start("nope")
        with pytest.raises(UnknownRun):
            await engine.result("missing-run", 1)


async def test_non_determinism_is_detected_on_replay(database_url: str) -> None:
    v1, v2 = Registry(), Registry()

    @workflow(registry=v1, name="evolving")
    async def evolving_v1(ctx: WorkflowContext) -> str:
        await ctx.step(lambda: 1, name="load")
        await ctx.receive("go", timeout=60)
        return "v1"

    @workflow(registry=v2, name="evolving")
    async def evolving_v2(ctx: WorkflowContext) -> str:
        await ctx.step(lambda: 1, name="fetch")  # renamed: the journal says "load"
        await ctx.receive("go", timeout=60)
        return "v2"

    async with Engine(database_url, registry=v1, version="pinned") as engine:
        await engine.start(evolving_v1, run_id="evolving-1")
        await eventually(lambda: _status_is(engine, "evolving-1", "waiting"))
    async with Engine(database_url, registry=v2, version="pinned") as engine:
        await engine.send("evolving-1", "go", None)
        with pytest.raises(WorkflowFailed) as failure:
            await engine.result("evolving-1", 10)
        assert failure.value.error_type == NonDeterminismError.__name__
        assert "'fetch' in the code but 'load' in the journal" in failure.value.message


async def _status_is(engine: Engine, run_id: str, status: str) -> bool:
    return (await engine.get_run(run_id)).status == status


async def test_runs_are_pinned_to_their_code_version(database_url: str) -> None:
    async with Engine(database_url, registry=reg, version="old", worker=False) as old:
        handle = await old.start(idempotent, 1)
    async with Engine(database_url, registry=reg, version="new", poll_interval=0.05) as new:
        await asyncio.sleep(0.3)
        assert (await new.get_run(handle.run_id)).status == "pending"
    async with Engine(database_url, registry=reg, version="old") as old:
        assert await old.result(handle.run_id, 10) == 2


@workflow(registry=reg, name="child_doubler")
async def child_doubler(ctx: WorkflowContext, x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return int(await counted("child", x)) * 2


@workflow(registry=reg, name="parent")
async def parent(ctx: WorkflowContext, xs: list[int]) -> dict[str, Any]:
    ids = [await ctx.start_child(child_doubler, x) for x in xs]
    results: list[Any] = []
    for child_id in ids:
        try:
            results.append(await ctx.wait_child(child_id))
        except WorkflowFailed as exc:
            results.append(exc.error_type)
    return {"results": results, "ids": ids}


async def test_child_workflows(database_url: str) -> None:
    async with Engine(database_url, registry=reg) as engine:
        handle = await engine.start(parent, [1, 2, -1, 3], run_id="parent-1")
        result = await handle.result(20)
        assert result["results"] == [2, 4, "ValueError", 6]
        children = [await engine.get_run(i) for i in result["ids"]]
        assert {c.parent_id for c in children} == {"parent-1"}
    assert counts["child"] == 3


@workflow(registry=reg, name="stubborn")
async def stubborn(ctx: WorkflowContext) -> None:
    await ctx.start_child(waits_for_go)
    while True:
        await counted("loop", 1)
        await asyncio.sleep(0.01)


async def test_cancellation_stops_at_next_step_and_cancels_children(database_url: str) -> None:
    async with Engine(database_url, registry=reg) as engine:
        handle = await engine.start(stubborn, run_id="stubborn")
        await eventually(lambda: asyncio.sleep(0, counts.get("loop", 0) > 3))
        cancelled = await handle.cancel()
        assert set(cancelled) == {"stubborn", "stubborn:1"}
        with pytest.raises(WorkflowCancelled):
            await handle.result(10)
        seen = counts["loop"]
        await asyncio.sleep(0.2)
        assert counts["loop"] <= seen + 1  # at most the step already in flight
        assert (await engine.get_run("stubborn:1")).status == "cancelled"
        assert await engine.cancel("stubborn") == []
        with pytest.raises(UnknownRun):
            await engine.cancel("nothing-here")


running_now: dict[str, int] = {}
peak: dict[str, int] = {}


@workflow(registry=reg, name="limited", queue="narrow")
async def limited(ctx: WorkflowContext, key: str) -> None:
    async def hold() -> None:
        running_now[key] = running_now.get(key, 0) + 1
        running_now["*"] = running_now.get("*", 0) + 1
        peak[key] = max(peak.get(key, 0), running_now[key])
        peak["*"] = max(peak.get("*", 0), running_now["*"])
        await asyncio.sleep(0.05)
        running_now[key] -= 1
        running_now["*"] -= 1

    await ctx.step(hold, name="hold")


async def test_queue_concurrency_limits_per_queue_and_per_key(database_url: str) -> None:
    running_now.clear()
    peak.clear()
    queues = [Queue("narrow", concurrency=3, per_key=1)]
    async with Engine(database_url, registry=reg, queues=queues, poll_interval=0.05) as engine:
        handles = [
            await engine.start(limited, key, queue_key=key) for key in ["a", "b", "c", "d"] * 3
        ]
        await asyncio.gather(*(h.result(30) for h in handles))
    assert peak["*"] == 3
    assert all(peak[k] == 1 for k in "abcd")


gates: dict[str, asyncio.Event] = {}


@workflow(registry=reg, name="gated")
async def gated(ctx: WorkflowContext, name: str) -> str:
    await ctx.step(lambda: gates[name].wait(), name="wait")
    return name


async def test_a_limited_queue_run_starts_where_it_was_started_and_its_key_next_when_it_ends(
    database_url: str,
) -> None:
    gates.clear()
    gates.update(first=asyncio.Event(), second=asyncio.Event())
    queues = [Queue("solo", per_key=1)]
    # No polling to fall back on: only the start itself and the first run's end start runs.
    async with Engine(
        database_url, registry=reg, queues=queues, poll_interval=60, recover_interval=60
    ) as engine:
        assert engine.worker is not None
        first = await engine.start(gated, "first", queue="solo", queue_key="k")
        assert first.run_id in engine.worker.active  # claimed by its insert, no claim pass
        second = await engine.start(gated, "second", queue="solo", queue_key="k")
        assert second.run_id not in engine.worker.active  # the key's one slot is taken
        assert await second.status() == "pending"
        gates["second"].set()
        await asyncio.sleep(0.2)
        assert await second.status() == "pending"
        gates["first"].set()
        assert await first.result(10) == "first"
        assert await second.result(10) == "second"  # woken by the first's outcome


acted = asyncio.Event()
looked = asyncio.Event()


async def _look() -> str:
    await looked.wait()
    return "seen"


async def _act(seen: str) -> str:
    acted.set()
    return f"acted on {seen}"


@workflow(registry=reg, name="look_then_act")
async def look_then_act(ctx: WorkflowContext) -> str:
    seen: str = await ctx.step(_look, name="look", read_only=True)
    return await ctx.step(_act, seen, name="act")


async def test_a_read_only_steps_record_does_not_hold_up_the_next_step(
    database_url: str,
) -> None:
    acted.clear()
    looked.clear()
    async with Engine(database_url, registry=reg) as engine:
        handle = await engine.start(look_then_act)
        blocker = await asyncpg.connect(database_url)
        try:
            # From here every journal write of a step waits behind this lock until it goes.
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("LOCK TABLE threadline.steps IN EXCLUSIVE MODE")
            looked.set()
            await asyncio.wait_for(acted.wait(), 10)  # ran while `look` was not yet durable
            assert await handle.status() == "running"
            await tx.rollback()
        finally:
            await blocker.close()
        assert await handle.result(10) == "acted on seen"
        steps = await engine.get_steps(handle.run_id)
    assert [(s.step_no, s.name) for s in steps] == [(1, "look"), (2, "act")]


@workflow(registry=reg, name="look_twice_then_act_then_look")
async def look_twice_then_act_then_look(ctx: WorkflowContext) -> str:
    await ctx.step(_peek, name="peek", read_only=True)
    await ctx.step(_peek, name="peek", read_only=True)
    await ctx.step(_peek, name="act")
    return str(await ctx.step(_peek, name="peek", read_only=True))


async def _peek() -> str:
    return "seen"


async def test_read_only_records_ride_with_the_runs_next_write(database_url: str) -> None:
    async with Engine(database_url, registry=reg) as engine:
        handle = await engine.start(look_twice_then_act_then_look)
        assert await handle.result(10) == "seen"
        async with engine.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT step_no, name, xmin::text AS tx FROM threadline.steps"
                " WHERE run_id = $1 ORDER BY step_no",
                handle.run_id,
            )
            outcome_tx = await conn.fetchval(
                "SELECT xmin::text FROM threadline.runs WHERE id = $1", handle.run_id
            )
    assert [(r["step_no"], r["name"]) for r in rows] == [
        (1, "peek"),
        (2, "peek"),
        (3, "act"),
        (4, "peek"),
    ]
    # The two reads commit with the step after them; the last read with the outcome.
    assert rows[0]["tx"] == rows[1]["tx"] == rows[2]["tx"]
    assert rows[3]["tx"] == outcome_tx != rows[2]["tx"]


@workflow(registry=reg, name="chatty")
async def chatty(ctx: WorkflowContext, n: int) -> int:
    for i in range(n):
        await ctx.emit("tick", {"i": i})
        await ctx.step(asyncio.sleep, 0.01, name="pause")
    return n


async def test_events_are_ordered_live_and_replayable(database_url: str) -> None:
    async with Engine(database_url, registry=reg) as engine:
        handle = await engine.start(chatty, 5)
        live = [(e.seq, e.data["i"]) async for e in handle.events()]
        assert live == [(i + 1, i) for i in range(5)]
        replay = [e.seq async for e in handle.events(after_seq=3, follow=False)]
        assert replay == [4, 5]


async def test_a_second_engine_sees_results_and_events_through_notify(database_url: str) -> None:
    async with Engine(database_url, registry=reg, worker=False) as client:
        handle = await client.start(chatty, 3)
        async with Engine(database_url, registry=reg):
            seen = [e.seq async for e in handle.events()]
            assert await handle.result(10) == 3
        assert seen == [1, 2, 3]
