"""One process or two: durable workflow runs per second and streamed chat tokens per second,
and what PostgreSQL spent on them (its CPU, its connections, WAL bytes per run, per turn and
per token). The figures the capacity model in docs/deploy.md is built from.

Runs: `--processes` `threadline worker` processes (`--concurrency` 100 each) execute
three-step workflows (each step durable before the next) that this process starts, `--runs`
at a time in flight, after a warm-up. Tokens: `threadline serve --processes N` (web and worker
in each process) streams the demo model to `--clients` WebSocket sessions (`streaming.py`'s
clients and checks: nothing lost or duplicated). PostgreSQL is the embedded server, started
here and shared by every phase (a database per phase).

    python benchmarks/scale.py
    python benchmarks/scale.py --json --write     # also benchmarks/results/scale.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import streaming  # noqa: E402

from threadline import Engine, Registry, WorkflowContext, db, step, workflow  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
registry = Registry()


@step
async def add_one(x: int) -> int:
    return x + 1


@workflow(registry=registry, name="scale.three_steps")
async def three_steps(ctx: WorkflowContext, x: int) -> int:
    x = await add_one(x)
    x = await add_one(x)
    return await add_one(x)


# `threadline worker --app benchmarks.scale:engine` runs the workflows.
engine = Engine(registry=registry, poll_interval=0.05)


class Database:
    """What the server spent between two readings: CPU of its processes, WAL bytes."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url, self.data_dir = url, data_dir

    def processes(self) -> list[psutil.Process]:
        return streaming._postgres(self.data_dir)

    async def reading(self) -> tuple[float, int, float]:
        conn = await asyncpg.connect(self.url)
        try:
            wal = await conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        finally:
            await conn.close()
        return time.monotonic(), int(wal), streaming._cpu_seconds(self.processes())

    async def connections(self, database: str) -> int:
        conn = await asyncpg.connect(self.url)
        try:
            found: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        finally:
            await conn.close()
        return found


async def fresh_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return re.sub(r"/[^/?]*(\?|$)", rf"/{name}\1", server_url, count=1)


def cli(*args: str, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "threadline.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_of(pids: list[int]) -> float:
    found = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(pid)
            found += [parent, *parent.children(recursive=True)]
    return streaming._cpu_seconds(found)


async def runs_phase(
    database: Database, server_url: str, processes: int, args: argparse.Namespace, log: Any
) -> dict[str, Any]:
    name = f"tl_scale_runs_{processes}"
    url = await fresh_database(server_url, name)
    async with Engine(url, registry=registry, worker=False) as client:  # migrates first
        env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT))
        workers = [
            cli(
                "worker",
                "--app",
                "benchmarks.scale:engine",
                "--concurrency",
                "100",
                env=env,
                log=log,
            )
            for _ in range(processes)
        ]
        try:
            async with asyncio.timeout(60):  # each worker's pool and listener connected
                while await database.connections(name) < processes * 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
            gate = asyncio.Semaphore(args.in_flight)

            async def one(i: int) -> None:
                async with gate:
                    handle = await client.start(three_steps, i)
                    await handle.result()

            await asyncio.gather(*(one(i) for i in range(args.warmup_runs)))
            before, pids = await database.reading(), [w.pid for w in workers]
            workers_cpu, here = cpu_of(pids), streaming._cpu_seconds([psutil.Process()])
            await asyncio.gather(*(one(i) for i in range(args.runs)))
            after = await database.reading()
            connections = await database.connections(name)
            seconds = after[0] - before[0]
            return {
                "processes": processes,
                "runs_per_s": round(args.runs / seconds, 1),
                "wal_bytes_per_run": round((after[1] - before[1]) / args.runs),
                "db_cpu_cores": round((after[2] - before[2]) / seconds, 2),
                "workers_cpu_cores": round((cpu_of(pids) - workers_cpu) / seconds, 2),
                "client_cpu_cores": round(
                    (streaming._cpu_seconds([psutil.Process()]) - here) / seconds, 2
                ),
                "db_connections": connections,
            }
        finally:
            stop(workers)


async def tokens_phase(
    database: Database, server_url: str, processes: int, args: argparse.Namespace, log: Any
) -> dict[str, Any]:
    name = f"tl_scale_tokens_{processes}"
    url = await fresh_database(server_url, name)
    port = streaming.free_port()
    env = dict(
        os.environ,
        DATABASE_URL=url,
        PYTHONPATH=str(ROOT),
        THREADLINE_DEMO_TOKENS_PER_SECOND=str(args.tps),
        THREADLINE_RATE_NEW_SESSIONS="off",
        THREADLINE_RATE_MESSAGES="off",
        THREADLINE_RATE_CONNECTIONS="off",
        THREADLINE_ADMIN_KEY="scale-benchmark",
    )
    serve = ["serve", "--port", str(port), "--agents", "benchmarks.streaming:AGENTS"]
    server = cli(*serve, "--processes", str(processes), env=env, log=log)
    base = f"http://127.0.0.1:{port}"
    try:
        await streaming.wait_up(base, server)
        children = [c.pid for c in psutil.Process(server.pid).children()]
        before = await database.reading()
        start = time.monotonic()
        result = await streaming.measure(
            base,
            args.clients,
            args.seconds,
            args.stream_warmup,
            args.stagger,
            server.pid,
            children,
            database.data_dir,
        )
        after = await database.reading()
        connections = await database.connections(name)
        # The window measured is `seconds` after the warm-up; WAL and database CPU are read
        # around the whole of it (warm-up included), so per-token figures use every token.
        whole = time.monotonic() - start
        tokens = result["tokens_per_s"] * args.seconds
        answers = result["answers"]
        return {
            "processes": processes,
            "clients": args.clients,
            "tokens_per_s": result["tokens_per_s"],
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
            "lost": result["lost"],
            "duplicated": result["duplicated"],
            "server_cpu_cores": round(
                result.get("server_cpu_cores", 0) + result.get("workers_cpu_cores", 0), 2
            ),
            "db_cpu_cores": round((after[2] - before[2]) / whole, 2),
            "wal_bytes_per_token": round((after[1] - before[1]) / whole / (tokens / args.seconds)),
            "wal_bytes_per_turn": round((after[1] - before[1]) / whole / (answers / args.seconds))
            if answers
            else None,
            "turns_per_s": round(answers / args.seconds, 1),
            "db_connections": connections,
        }
    finally:
        stop([server])


async def main(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = db.temporary_data_dir("tl-scale-")
    server_url = db.start_embedded(data_dir)
    database = Database(server_url, data_dir)
    log_path = data_dir.with_suffix(".log")
    results: dict[str, Any] = {"runs": [], "tokens": [], "machine": f"{os.cpu_count()} cores"}
    with log_path.open("wb") as log:
        for processes in args.processes:
            results["runs"].append(await runs_phase(database, server_url, processes, args, log))
            results["tokens"].append(await tokens_phase(database, server_url, processes, args, log))
    results["log"] = str(log_path)
    return results


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--warmup-runs", type=int, default=300)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--stream-warmup", type=float, default=10.0)
    parser.add_argument("--stagger", type=float, default=10.0)
    parser.add_argument("--tps", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"also {RESULTS.relative_to(ROOT)}")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    found = run_loop(main(arguments))
    found["date"] = time.strftime("%F")
    if arguments.write:
        RESULTS.write_text(json.dumps(found, indent=1) + "\n")
    if arguments.json:
        print(json.dumps(found))
    else:
        for kind in ("runs", "tokens"):
            for row in found[kind]:
                print(kind, json.dumps(row))
