"""Helpers shared by tests: worker subprocesses and polling."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from starlette.routing import BaseRoute, Route, WebSocketRoute

ROOT = Path(__file__).resolve().parent.parent


def spawn_worker(
    database_url: str, app: str, log: Path | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    if log is not None:
        env["THREADLINE_TEST_LOG"] = str(log)
    env.update(extra_env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "threadline.cli", "worker", "--app", app],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    return out.decode(errors="replace")


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition"
) -> None:
    """Poll `check` until it is true; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a cheap, synchronous `condition` every 10 ms until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def endpoints(routes: Iterable[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route, "WS" for a WebSocket, through included routers."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI's included router
        if inner is not None:
            found |= endpoints(inner.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
        elif isinstance(route, WebSocketRoute) or type(route).__name__ == "APIWebSocketRoute":
            found.add(("WS", prefix + route.path))  # type: ignore[attr-defined]
        elif isinstance(route, Route):
            found |= {(m, prefix + route.path) for m in route.methods or () if m != "HEAD"}
        else:
            raise AssertionError(f"the table cannot read {route!r}")
    return found
