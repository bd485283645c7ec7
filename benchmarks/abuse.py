"""Floods from one address against a live `threadline serve` while real users chat: does
anyone but the attacker notice?

`threadline serve` runs in its own process with its default limits (embedded PostgreSQL,
the offline demo model streaming `--tps` tokens per second). `--users` real users, each from
an address of its own (`X-Forwarded-For`, which uvicorn trusts from 127.0.0.1 by default),
hold a session and a WebSocket each and chat: a message, its answer, a pause of 0.5-1.5 s,
again. Time to first token (TTFT) is from sending a message to its first `message.delta`.
After `--warmup` seconds (not counted), first `--seconds` unloaded, then `--seconds` under
these floods, all from one other address (127.0.0.2, its own connections: not a proxy the
server trusts), in a process of its own:

- bodies: `--bodies` requests at once to `POST /v1/sessions`, each announcing 100 MB and
  sending it in 1 MB pieces, again as soon as one is answered;
- half-open sockets: `--sockets` connections that send part of a request's headers and then
  nothing (the server's header timeout must drop them, its connection cap bound them);
- sessions: `POST /v1/sessions` as fast as one connection can;
- messages: `POST /v1/sessions/{id}/messages` to the attacker's sessions as fast as it can.

Reported: the users' TTFT p50/p99 in each phase and their ratio, failures and 5xx the users
met, the server's RSS (idle, with the users, peak under the floods; sampled every 0.2 s),
and what the attacker got (statuses; sockets the server closed).
Targets: users' p99 TTFT ≤ 2× unloaded, RSS ≤ 2× idle, no 5xx for users.

    python benchmarks/abuse.py
    python benchmarks/abuse.py --users 50 --seconds 20 --json
    python benchmarks/abuse.py --write          # also benchmarks/results/abuse.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline.agents import Agent, Turn  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "abuse.json"
# The attacker's own address: loopback answers all of 127/8, and uvicorn trusts
# X-Forwarded-For only from 127.0.0.1, so the server sees this address as it would a remote one.
ATTACKER = "127.0.0.2"

chat = Agent(name="chat", model="demo:threadline-demo", prompt="You are a test bot.")


@chat.state("start")
async def _start(turn: Turn) -> str | None:
    await turn.reply()
    return None


AGENTS = [chat]


@dataclass
class Users:
    ttft: dict[str, list[float]] = field(
        default_factory=lambda: {"warmup": [], "unloaded": [], "flood": []}
    )
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    phase: str = "warmup"


async def user(url: str, n: int, users: Users, stop: asyncio.Event) -> None:
    """One real user: a session, a WebSocket, and messages until `stop`."""
    headers = {"x-forwarded-for": f"10.0.{n // 250}.{n % 250 + 1}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        r = await http.post("/v1/sessions", json={"agent": "chat"})
        if r.status_code != 201:
            users.failures[f"create {r.status_code}"] += 1
            return
        session = r.json()
    ws_url = url.replace("http", "ws") + (
        f"/v1/sessions/{session['session_id']}/ws?token={session['token']}"
    )
    try:
        async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:
            sent = 0
            while not stop.is_set():
                sent += 1
                phase, started, first = users.phase, time.perf_counter(), None
                await ws.send(
                    json.dumps({"type": "message.send", "client_id": f"m{sent}", "text": "Hi"})
                )
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if frame["type"] == "message.delta" and first is None:
                        first = time.perf_counter() - started
                    elif frame["type"] in ("error", "message.error"):
                        users.failures[f"{frame['type']} {frame.get('code')}"] += 1
                        break
                    elif frame["type"] == "message.end":
                        break
                if first is not None and phase == users.phase:
                    users.ttft[phase].append(first)
                await asyncio.sleep(random.uniform(0.5, 1.5))
    except (OSError, websockets.WebSocketException, TimeoutError) as exc:
        users.failures[f"socket {type(exc).__name__}"] += 1


async def flood_bodies(
    host: str, port: int, stop: asyncio.Event, seen: collections.Counter[str]
) -> None:
    """A request announcing 100 MB, sent in 1 MB pieces, until the server answers."""
    piece = b"x" * (1 << 20)
    while not stop.is_set():
        answer: asyncio.Task[bytes] | None = None
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACKER, 0))
            writer.write(
                b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
            )
            answer = asyncio.create_task(reader.readline())
            for _ in range(100):
                if answer.done() or stop.is_set():
                    break
                writer.write(piece)
                await writer.drain()
            status = await asyncio.wait_for(answer, 10)
            seen[f"body {status.split(b' ')[1].decode() if status else 'closed'}"] += 1
            writer.close()
        except (OSError, TimeoutError, IndexError):
            seen["body connection dropped"] += 1
            if answer is not None:
                answer.cancel()
            await asyncio.sleep(0.05)


async def flood_sockets(
    host: str, port: int, count: int, stop: asyncio.Event, seen: collections.Counter[str]
) -> None:
    """`count` connections that start a request and never finish its headers."""

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port, local_addr=(ATTACKER, 0))
        except OSError:
            seen["socket refused"] += 1
            return
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        try:
            ended = asyncio.create_task(reader.read())
            stopped = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
            seen["socket closed by the server" if ended in done else "socket still open"] += 1
            for task in (ended, stopped):
                task.cancel()
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(count)))


async def flood_requests(url: str, stop: asyncio.Event, seen: collections.Counter[str]) -> None:
    """New sessions, and messages to the attacker's sessions, as fast as they go."""
    transport = httpx.AsyncHTTPTransport(local_address=ATTACKER)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as http:
        mine: list[dict[str, Any]] = []
        n = 0
        while not stop.is_set():
            n += 1
            try:
                r = await http.post("/v1/sessions", json={"agent": "chat"})
                seen[f"session {r.status_code}"] += 1
                if r.status_code == 201:
                    mine.append(r.json())
                if mine:
                    s = random.choice(mine)
                    r = await http.post(
                        f"/v1/sessions/{s['session_id']}/messages",
                        params={"token": s["token"]},
                        json={"client_id": f"f{n}", "text": "spend it all"},
                    )
                    seen[f"message {r.status_code}"] += 1
            except httpx.TransportError:  # the connection refused or reset: again at once
                seen["request connection dropped"] += 1


async def attack(url: str, args: argparse.Namespace) -> dict[str, int]:
    """Every flood at once for `args.seconds`, from the attacker's address."""
    port = int(url.rsplit(":", 1)[1])
    stop, seen = asyncio.Event(), collections.Counter[str]()
    floods = []
    if "sockets" in args.floods:
        floods.append(
            asyncio.create_task(flood_sockets("127.0.0.1", port, args.sockets, stop, seen))
        )
    if "requests" in args.floods:
        floods.append(asyncio.create_task(flood_requests(url, stop, seen)))
    if "bodies" in args.floods:
        floods += [
            asyncio.create_task(flood_bodies("127.0.0.1", port, stop, seen))
            for _ in range(args.bodies)
        ]
    await asyncio.sleep(args.seconds)
    stop.set()
    await asyncio.gather(*floods, return_exceptions=True)
    return dict(sorted(seen.items()))


async def sample_rss(process: psutil.Process, into: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(psutil.Error):
            into.append(process.memory_info().rss / 2**20)
        await asyncio.sleep(0.2)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


async def measure(
    url: str, port: int, server: psutil.Process, args: argparse.Namespace
) -> dict[str, Any]:
    idle = server.memory_info().rss / 2**20
    users, stop_users = Users(), asyncio.Event()
    tasks = [asyncio.create_task(user(url, n, users, stop_users)) for n in range(args.users)]
    await asyncio.sleep(args.warmup)  # sessions made, first plans and caches warm: not counted
    users.phase = "unloaded"
    await asyncio.sleep(args.seconds)
    with_users = server.memory_info().rss / 2**20
    users.phase = "flood"
    stop_flood, rss = asyncio.Event(), [with_users]
    sampler = asyncio.create_task(sample_rss(server, rss, stop_flood))
    # The attacker is a process of its own: its loop does not slow the users' clock.
    attacker = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--attack",
        url,
        "--seconds",
        str(args.seconds),
        "--bodies",
        str(args.bodies),
        "--sockets",
        str(args.sockets),
        "--floods",
        args.floods,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await attacker.communicate()
    seen = json.loads(out.decode().strip().splitlines()[-1])
    stop_flood.set()
    stop_users.set()
    await sampler
    await asyncio.gather(*tasks, return_exceptions=True)
    unloaded, flood = users.ttft["unloaded"], users.ttft["flood"]
    p99 = percentile(unloaded, 0.99), percentile(flood, 0.99)
    return {
        "users": args.users,
        "seconds_per_phase": args.seconds,
        "floods": args.floods,
        "ttft_ms": {
            "unloaded": {"p50": percentile(unloaded, 0.5), "p99": p99[0], "n": len(unloaded)},
            "flood": {"p50": percentile(flood, 0.5), "p99": p99[1], "n": len(flood)},
        },
        "p99_ratio": round(p99[1] / p99[0], 2) if p99[0] and p99[1] else None,
        "user_failures": dict(users.failures),
        "rss_mib": {
            "idle": round(idle, 1),
            "with_users": round(with_users, 1),
            "flood_peak": round(max(rss), 1),
            "peak_over_idle": round(max(rss) / idle, 2),
        },
        "attacker": seen,
    }


async def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError("the server exited (see its log)")
            with contextlib.suppress(httpx.TransportError):
                await http.get(url + "/widget.js")
                return
            await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="per phase")
    parser.add_argument("--warmup", type=float, default=5.0, help="before the unloaded phase")
    parser.add_argument("--tps", type=int, default=50, help="demo model tokens per second")
    parser.add_argument("--bodies", type=int, default=8)
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument(
        "--floods", default="bodies,sockets,requests", help="which floods, comma-separated"
    )
    parser.add_argument("--attack", metavar="URL", help=argparse.SUPPRESS)  # the flood's process
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write", action="store_true", help=f"also {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    if args.attack:
        print(json.dumps(run_loop(attack(args.attack, args))))
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data_dir = Path(tempfile.mkdtemp(prefix="tl-abuse-"))
    env = dict(
        os.environ,
        THREADLINE_DEMO_TOKENS_PER_SECOND=str(args.tps),
        THREADLINE_DATA_DIR=str(data_dir),
        PYTHONPATH=str(ROOT),
    )
    log = (data_dir.with_suffix(".log")).open("wb")
    cli = [sys.executable, "-m", "threadline.cli"]
    proc = subprocess.Popen(
        [*cli, "serve", "--port", str(port), "--agents", "benchmarks.abuse:AGENTS"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        run_loop(wait_up(url, proc))
        results = run_loop(measure(url, port, psutil.Process(proc.pid), args))
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    results["server_log"] = str(data_dir.with_suffix(".log"))
    if args.write:
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if args.json:
        print(json.dumps(results))
        return
    t = results["ttft_ms"]
    print(
        f"users' TTFT p50/p99: unloaded {t['unloaded']['p50']}/{t['unloaded']['p99']} ms "
        f"(n={t['unloaded']['n']}), flood {t['flood']['p50']}/{t['flood']['p99']} ms "
        f"(n={t['flood']['n']}): p99 ×{results['p99_ratio']}\n"
        f"users' failures: {results['user_failures'] or 'none'}\n"
        f"server RSS MiB: {results['rss_mib']}\n"
        f"attacker got: {results['attacker']}"
    )


if __name__ == "__main__":
    main()
