"""`threadline serve --processes N`: N server processes on one port, each with its own event
loop, database pool and (unless `--no-worker`) worker, bound with SO_REUSEPORT so that the
kernel spreads new connections among them. This process supervises them: it starts the
embedded database if there is no `DATABASE_URL`, applies migrations once, logs the dashboard
login link, starts the children, starts a child again if one dies, and on SIGTERM or Ctrl-C
passes the signal on and waits for them to drain."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from .. import db
from ..engine import Engine
from ..engine.engine import pool_size_from_env
from ..loop import run as run_loop
from . import login_links
from .serve import SHUTDOWN_GRACE_S, drain_delay, log_login_link, wants_login_link

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
QUICK_DEATH_S = 10.0  # a child that dies this soon after it started, three times: give up
DRAIN_S = SHUTDOWN_GRACE_S + 35  # a child's open requests, then its worker's turns (30 s)


async def _prepare(database_url: str, *, host: str, port: int, open_dashboard: bool) -> None:
    """Migrations once, before any child starts; the login link every child honours."""
    async with Engine(database_url, worker=False) as engine:
        if wants_login_link(open_dashboard):
            log_login_link(host, port, await login_links.make(engine.pool))


def serve_processes(
    count: int,
    child_args: Sequence[str],
    *,
    database_url: str | None,
    host: str,
    port: int,
    open_dashboard: bool,
) -> int:
    """Run `count` children of `threadline serve CHILD_ARGS` until a signal; the exit code."""
    url = db.resolve_database_url(database_url)
    run_loop(_prepare(url, host=host, port=port, open_dashboard=open_dashboard))
    env = dict(os.environ, DATABASE_URL=url)
    command = [sys.executable, "-m", "threadline.cli", "serve", *child_args, "--child"]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    children = [subprocess.Popen(command, env=env) for _ in range(count)]
    started = [time.monotonic()] * count
    quick_deaths = [0] * count
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    pool = pool_size_from_env()
    log.warning(
        "threadline: %d server processes on port %d; database connections at most %d"
        " (%d × (pool %d + 2 listening))",
        count,
        port,
        count * (pool + 2),
        count,
        pool,
    )
    while not stopping:
        time.sleep(0.2)
        for n, child in enumerate(children):
            code = child.poll()
            if code is None or stopping:
                continue
            quick = time.monotonic() - started[n] < QUICK_DEATH_S
            quick_deaths[n] = quick_deaths[n] + 1 if quick else 0
            if quick_deaths[n] >= 3:
                log.error("server process %d keeps dying (exit %s): stopping", child.pid, code)
                stop(signal.SIGTERM, None)
                break
            log.warning("server process %d exited (%s): starting another", child.pid, code)
            time.sleep(RESTART_DELAY_S)
            children[n] = subprocess.Popen(command, env=env)
            started[n] = time.monotonic()
    deadline = time.monotonic() + drain_delay() + DRAIN_S  # the children's delay first
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 1 if any(q >= 3 for q in quick_deaths) else 0
