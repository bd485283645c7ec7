"""Workflows that tests run in worker subprocesses. Every step execution appends a line to
the file named by $THREADLINE_TEST_LOG, so a test can count executions across processes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from threadline import Engine, Registry, WorkflowContext, step, workflow

registry = Registry()


def log_execution(name: str) -> None:
    path = os.environ.get("THREADLINE_TEST_LOG")
    if path:
        with open(path, "a") as f:
            f.write(f"{name} {os.getpid()}\n")


def executions(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


@step
async def record(name: str, value: int) -> int:
    log_execution(name)
    return value + 1


@step
async def hang_first_time(value: int) -> int:
    """Logs, then on its first execution ever hangs (until the test kills the process)."""
    log_execution("hang")
    marker = Path(os.environ["THREADLINE_TEST_LOG"] + ".hung")
    if not marker.exists():
        marker.write_text("x")
        await asyncio.sleep(120)
    return value * 10


@workflow(registry=registry, name="crashy")
async def crashy(ctx: WorkflowContext, value: int) -> int:
    a = await record("one", value)
    b = await hang_first_time(a)
    return await record("three", b)


@workflow(registry=registry, name="patient")
async def patient(ctx: WorkflowContext, value: int) -> dict[str, Any]:
    a = await record("before", value)
    await ctx.sleep(1.0)
    await ctx.emit("slept")
    message = await ctx.receive("go", timeout=300)
    b = await record("after", a)
    return {"value": b, "message": message}


engine = Engine(registry=registry, poll_interval=0.2, recover_interval=0.2)
