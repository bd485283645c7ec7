"""Durable 3-step workflow throughput: threadline against DBOS, LangGraph and Temporal.

Every framework runs the same workload (see `peers.py`): three trivial steps, each returning
its input plus one, each step durable before the next starts, 100 runs in flight, a warm-up
that is not counted, then `--runs` timed runs. threadline and the Postgres-based peers use the
same PostgreSQL server (the embedded one unless `--database-url` is given), each in a database
of its own. Peak RSS is this process's (threadline's engine with its in-process worker).

    python benchmarks/engine_throughput.py              # table on the terminal
    python benchmarks/engine_throughput.py --json       # one JSON object
    python benchmarks/engine_throughput.py --plot benchmarks/results/engine_throughput.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers

from threadline import (
    Engine,
    Registry,
    WorkflowContext,
    db,
    step,
    workflow,
)
from threadline.loop import run as run_loop

registry = Registry()


@step
async def add_one(x: int) -> int:
    return x + 1


@workflow(registry=registry, name="three_steps")
async def three_steps(ctx: WorkflowContext, x: int) -> int:
    x = await add_one(x)
    x = await add_one(x)
    return await add_one(x)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def fresh_database(server_url: str, name: str) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    return re.sub(r"/[^/?]*(\?|$)", rf"/{name}\1", server_url, count=1)


async def bench_threadline(
    database_url: str, runs: int, concurrency: int, warmup: int
) -> peers.PeerResult:
    async with Engine(database_url, registry=registry, concurrency=concurrency) as engine:

        async def run_one(i: int) -> int:
            handle = await engine.start(three_steps, i)
            result: int = await handle.result()
            return result

        return await peers._measure("threadline", run_one, runs, concurrency, warmup)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    server_url = args.database_url or db.start_embedded(db.temporary_data_dir("tl-bench-"))
    sizes = {"runs": args.runs, "concurrency": args.concurrency, "warmup": args.warmup}
    ours_url = await fresh_database(server_url, "tl_bench")
    ours = await bench_threadline(ours_url, **sizes)
    rss = peak_rss_mib()
    # One run at a time: the latency a single caller sees, end to end.
    single = await bench_threadline(ours_url, runs=args.single_runs, concurrency=1, warmup=50)
    peer_results: dict[str, peers.PeerResult | str] = {}
    if not args.no_peers:
        for name in ("dbos", "langgraph", "temporal"):
            try:
                if name == "temporal":
                    result = await peers.bench_temporal(**sizes)
                else:
                    url = await fresh_database(server_url, f"tl_bench_{name}")
                    bench = peers.bench_dbos if name == "dbos" else peers.bench_langgraph
                    result = await bench(url, **sizes)
            except peers.PeerUnavailable as exc:
                peer_results[name] = f"unavailable: {exc.reason}"
                continue
            peer_results[name] = result
            # Let the peer's connections and threads wind down before the next one starts.
            await asyncio.sleep(1)
    return {
        "runs_per_s": ours["runs_per_s"],
        "p50_ms": ours["p50_ms"],
        "p99_ms": ours["p99_ms"],
        "single_p50_ms": single["p50_ms"],
        "single_p99_ms": single["p99_ms"],
        "peak_rss_mib": round(rss, 1),
        "runs": ours["runs"],
        "concurrency": args.concurrency,
        "peers": {k: v["runs_per_s"] for k, v in peer_results.items() if not isinstance(v, str)},
        "peer_details": peer_results,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["threadline", *result["peers"]]
    values = [result["runs_per_s"], *result["peers"].values()]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bars = ax.barh(names[::-1], values[::-1], color=["#888"] * (len(names) - 1) + ["#2b6cb0"])
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values[::-1]], padding=3)
    ax.set_xlabel("3-step durable workflow runs per second (100 in flight, higher is better)")
    ax.set_xlim(0, max(values) * 1.2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("framework", "runs/s", "p50 ms", "p99 ms", "threadline is")
    table.add_row(
        "threadline", f"{result['runs_per_s']:,.0f}", f"{result['p50_ms']}", f"{result['p99_ms']}"
    )
    for name, detail in result["peer_details"].items():
        if isinstance(detail, str):
            table.add_row(name, detail, "", "", "")
            continue
        ratio = result["runs_per_s"] / detail["runs_per_s"]
        table.add_row(
            name,
            f"{detail['runs_per_s']:,.0f}",
            f"{detail['p50_ms']}",
            f"{detail['p99_ms']}",
            f"{ratio:.1f}× faster",
        )
    Console().print(table)
    Console().print(
        f"one run at a time: p50 {result['single_p50_ms']} ms, p99 {result['single_p99_ms']} ms;"
        f" peak RSS {result['peak_rss_mib']} MiB; {result['runs']} timed runs"
    )


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", default=None, help="default: an embedded PostgreSQL")
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--single-runs", type=int, default=500, help="runs one at a time")
    parser.add_argument("--no-peers", action="store_true", help="measure threadline alone")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--plot", type=Path, default=None, help="write a bar chart (PNG)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    result = run_loop(main(args))
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    if args.plot:
        plot(result, args.plot)
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "peer_details"}))
    else:
        print_table(result)


if __name__ == "__main__":
    cli()
