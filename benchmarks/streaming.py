"""Many chat sessions streaming at once: tokens per second delivered, provider-to-client
latency, lost or duplicated tokens, and the server's memory.

`threadline serve` runs in its own process (web server + worker, embedded PostgreSQL unless
`--database-url`), with the offline demo model streaming `--tps` tokens per second per
session. This process opens N WebSocket clients, one session each; every client sends a
message, and another as soon as an answer ends, for `--seconds`. Each `message.delta` carries
the time the model produced it; latency is the time it reached the client (one clock, one
machine). A delta is lost when its sequence number never arrives, duplicated when it arrives
twice; each answer's deltas must also add up to its `message.end` text.

    python benchmarks/streaming.py --clients 100
    python benchmarks/streaming.py --json --clients 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline.agents import Agent, Turn  # noqa: E402

bench = Agent(
    name="bench",
    model="demo:threadline-demo",
    prompt="You are a streaming benchmark. Context:\n## Facts\n"
    + " ".join(f"Fact number {i} is that the sky has {i} shades of blue." for i in range(12)),
)


@bench.state("start")
async def _answer(turn: Turn) -> str | None:
    await turn.reply()
    return None


AGENTS = [bench]


@dataclass
class ClientStats:
    latencies: list[float] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    tokens: int = 0
    answers: int = 0
    mismatched: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def run_client(url: str, http: httpx.AsyncClient, deadline: float) -> ClientStats:
    stats = ClientStats()
    r = await http.post(url + "/v1/sessions", json={"agent": "bench"})
    r.raise_for_status()
    session = r.json()
    ws_url = (
        f"{url.replace('http', 'ws')}/v1/sessions/{session['session_id']}/ws"
        f"?token={session['token']}"
    )
    async with websockets.connect(ws_url, max_queue=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        n = 0
        while time.time() < deadline:
            n += 1
            await ws.send(
                json.dumps(
                    {"type": "message.send", "client_id": f"m{n}", "text": "Tell me the facts"}
                )
            )
            text = ""
            while True:
                frame = json.loads(await ws.recv())
                if "seq" in frame:
                    stats.seqs.append(frame["seq"])
                if frame["type"] == "message.delta":
                    stats.latencies.append((time.time() - frame["ts"]) * 1000)
                    stats.tokens += 1
                    text += frame["text"]
                elif frame["type"] == "message.end":
                    stats.answers += 1
                    stats.mismatched += text != frame["text"]
                    break
    return stats


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


async def measure(url: str, clients: int, seconds: float, server_pid: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        started = time.time()
        deadline = started + seconds
        peak = 0.0

        async def sample() -> None:
            nonlocal peak
            while True:
                peak = max(peak, rss_mib(server_pid))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        results = await asyncio.gather(*(run_client(url, http, deadline) for _ in range(clients)))
        elapsed = time.time() - started
        sampler.cancel()
    latencies = [x for r in results for x in r.latencies]
    lost = duplicated = 0
    for r in results:
        seen = sorted(r.seqs)
        duplicated += len(seen) - len(set(seen))
        if seen:
            lost += (seen[-1] - seen[0] + 1) - len(set(seen))
    return {
        "clients": clients,
        "tokens_per_s": round(sum(r.tokens for r in results) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 2),
        "lost": lost,
        "duplicated": duplicated,
        "mismatched_answers": sum(r.mismatched for r in results),
        "answers": sum(r.answers for r in results),
        "rss_mib": round(peak, 1),
    }


async def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(
                    "the server exited: " + proc.stdout.read().decode() if proc.stdout else ""
                )
            try:
                await http.get(url + "/widget.js")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--tps", type=float, default=20.0, help="tokens per second per session")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    port = free_port()
    env = dict(
        os.environ,
        THREADLINE_DEMO_TOKENS_PER_SECOND=str(args.tps),
        THREADLINE_DATA_DIR=tempfile.mkdtemp(prefix="tl-stream-"),
        PYTHONPATH=str(ROOT),
    )
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "threadline.cli",
            "serve",
            "--port",
            str(port),
            "--agents",
            "benchmarks.streaming:AGENTS",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_up(url, server))
        result = asyncio.run(measure(url, args.clients, args.seconds, server.pid))
    finally:
        server.terminate()
        server.wait(30)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
