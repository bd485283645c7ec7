"""Many chat sessions streaming at once: tokens per second delivered, provider-to-client
latency, lost or duplicated tokens, and the server's memory.

`threadline serve` runs in its own process (web server + worker, embedded PostgreSQL unless
`--database-url`), with the offline demo model streaming `--tps` tokens per second per
session. This process opens N WebSocket clients, one session each (all connected before the
clock starts); every client sends a first message at a random moment of the first
`--stagger` seconds, and another as soon as an answer (about 210 tokens) ends; deltas made in
the `--seconds` after a `--warmup` count. Each `message.delta` carries the time the model
produced it (`ts`: for the demo model, when its pace made the token due, however late the busy
server got to it, as a provider's token waits in the socket until the server reads it);
latency is the time it reached the client (one clock, one machine). Deltas made by the
process serving the client arrive live, before they are logged (no sequence number;
`offset` places each in its answer): a delta is lost when its
offset is past the text the client has (a gap), duplicated when it repeats text the client
has, and a logged frame is duplicated when its sequence number arrives twice; each answer's
deltas must also add up to its `message.end` text.

`*_cpu_cores` is the CPU (user + system) each process group used in the window: the server
process with all its threads (not its children), the embedded PostgreSQL (found by its data
directory: `pg_ctl` daemonizes it, so it is no child of the server) with its backends, the
`--workers`, and this client. `server_cpu_us_per_token` and `db_cpu_us_per_token` divide it
by the tokens counted in the window (`workers_cpu_us_per_token` with `--workers`).

`--pin` (Linux, two cores or more) keeps the server off the load generator's core: the server
(and any `--workers`) starts under `taskset -c 0`, this process and the embedded PostgreSQL
run on core 1. PostgreSQL is started by the server, so it starts on core 0; once the server
is up every thread of every postgres process is moved, and again when the window opens.
Backends forked later inherit the postmaster's core, so moving the postmaster is what matters.
The affinities go to stderr, and `pinned` into the result.

    python benchmarks/streaming.py --clients 100
    python benchmarks/streaming.py --json --clients 500
    python benchmarks/streaming.py --clients 500 --record benchmarks/results/streaming.jsonl
    python benchmarks/streaming.py --clients 300 --pin
    python benchmarks/streaming.py --plot benchmarks/results/streaming.png   # from the record
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import re
import shutil
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
import psutil
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from threadline import Engine  # noqa: E402
from threadline.agents import Agent, Turn  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402
from threadline.sessions import Sessions  # noqa: E402


def _fact(i: int) -> str:
    clauses = ", ".join(f"over hill {j} the sky shows {i + j} shades of blue" for j in range(10))
    return f"Fact number {i} is that {clauses}."


# The demo model answers with the two facts that best match the question: about 210 words,
# ten seconds at 20 tokens/s, so that sessions spend their time streaming as chat answers do.
bench = Agent(
    name="bench",
    model="demo:threadline-demo",
    prompt="You are a streaming benchmark. Context:\n## Facts\n"
    + " ".join(_fact(i) for i in range(12)),
)


@bench.state("start")
async def _answer(turn: Turn) -> str | None:
    await turn.reply()
    return None


AGENTS = [bench]
TOKEN = re.compile(r"\S+")  # the demo model streams a word at a time
# For `--workers`: `threadline worker --app benchmarks.streaming:engine` runs the turns.
engine = Engine()
Sessions(engine, AGENTS)


@dataclass
class ClientStats:
    latencies: list[float] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    lost: int = 0  # deltas that left a gap in the answer's text
    duplicated: int = 0  # deltas that repeated some of it
    tokens: int = 0
    frames: int = 0
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


class Client(asyncio.Protocol):
    """One session's WebSocket, read as the bytes arrive: a frame's arrival is the moment its
    bytes were read, and they are parsed by websockets' sans-I/O protocol without a task
    wake-up per frame, after every ready socket was read. The load generator shares the
    server's machine, so it spends as little as it can and adds as little as it can to what
    it measures."""

    def __init__(self, uri: str) -> None:
        self.protocol = ClientProtocol(parse_uri(uri), max_size=None)
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.on_frame: Any = None  # called with (frame, arrival time)
        self.first: dict[str, Any] | None = None  # session.state
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        # Stamped now, parsed once the loop has read every socket that is ready: the server
        # writes its frames in bursts, and parsing one connection's frame here would make the
        # next connection's arrival look later by the time it took.
        if not _unparsed:
            asyncio.get_running_loop().call_soon(_parse_unparsed)
        _unparsed.append((self, data, time.time()))

    def parse(self, data: bytes, now: float) -> None:
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                if event.status_code != 101 and not self.opened.done():
                    self.opened.set_exception(RuntimeError(f"handshake: {event.status_code}"))
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                assert event.fin, "the server sends whole frames"
                frame = json.loads(bytes(event.data))
                if self.first is None:
                    self.first = frame
                    if not self.opened.done():  # not given up on (a failed setup)
                        self.opened.set_result(None)
                elif self.on_frame is not None:
                    self.on_frame(frame, now)
        self._flush()  # pongs, a close

    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:
                self.transport.close()

    def send(self, frame: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(frame).encode())
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.opened, self.closed):
            if fut.done():
                continue
            if self.closing:
                fut.set_result(None)
            else:
                fut.set_exception(exc or ConnectionError("the server closed the connection"))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


_unparsed: list[tuple[Client, bytes, float]] = []  # bytes read, with when, not yet parsed


def _parse_unparsed() -> None:
    batch = _unparsed[:]
    _unparsed.clear()
    for client, data, now in batch:
        client.parse(data, now)


async def open_client(url: str, http: httpx.AsyncClient) -> Client:
    """A session and its WebSocket, streaming from the start of its log."""
    r = await http.post(url + "/v1/sessions", json={"agent": "bench"})
    r.raise_for_status()
    session = r.json()
    ws_url = (
        f"{url.replace('http', 'ws')}/v1/sessions/{session['session_id']}/ws"
        f"?token={session['token']}"
    )
    uri = parse_uri(ws_url)
    _, client = await asyncio.get_running_loop().create_connection(
        lambda: Client(ws_url), uri.host, uri.port
    )
    await asyncio.wait_for(client.opened, 60)
    client.send({"type": "resume", "after_seq": 0})
    return client


async def converse(client: Client, window: tuple[float, float], delay: float) -> ClientStats:
    """After `delay`, send a message, read its answer, repeat until the window closes. Only
    deltas made inside the window count, so connecting and the last answers do not dilute
    the rate."""
    stats = ClientStats()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    text = ""
    sent = 0

    def ask() -> None:
        nonlocal sent, text
        sent += 1
        text = ""
        client.send({"type": "message.send", "client_id": f"m{sent}", "text": "Tell me the facts"})

    def on_frame(frame: dict[str, Any], arrived: float) -> None:
        nonlocal text
        if "seq" in frame:
            stats.seqs.append(frame["seq"])
        if frame["type"] == "message.delta":
            offset = frame.get("offset", len(text))
            stats.lost += offset > len(text)
            stats.duplicated += offset < len(text)
            text += frame["text"]
            if window[0] <= frame["ts"] < window[1]:
                # A frame carries one token, or several when the server fell behind (logged
                # pieces join while a commit is in flight); `ts` is its first token's time,
                # so each token's latency is counted from the oldest.
                tokens = len(TOKEN.findall(frame["text"]))
                stats.latencies += [(arrived - frame["ts"]) * 1000] * tokens
                stats.tokens += tokens
                stats.frames += 1
        elif frame["type"] == "message.end":
            stats.answers += 1
            stats.mismatched += text != frame["text"]
            if time.time() < window[1]:
                ask()
            elif not done.done():
                done.set_result(None)

    await asyncio.sleep(delay)
    client.on_frame = on_frame
    ask()
    try:
        await asyncio.wait([done, client.closed], return_when=asyncio.FIRST_COMPLETED)
        if client.closed.done():
            client.closed.result()  # raises: the server went away mid-run
    finally:
        client.close()
    return stats


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            times = p.cpu_times()
            total += times.user + times.system
    return total


def _postgres(data_dir: Path) -> list[psutil.Process]:
    """The embedded server of `data_dir` (it outlives its starter, so not a child) and its
    backends."""
    for p in psutil.process_iter(["cmdline"]):
        if str(data_dir / "pg") in (p.info["cmdline"] or []):
            return [p, *p.children(recursive=True)]
    return []


# `--pin`: the core of each process group; the server's side on one, the rest on the other.
PINS = {"server": {0}, "workers": {0}, "db": {1}, "client": {1}}


def _threads(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]
    return []  # gone


def pin(groups: dict[str, list[psutil.Process]]) -> int:
    """Every thread of each group's processes onto its core in PINS (`sched_setaffinity` of a
    pid moves only that thread, as `taskset -p` without `-a`); the number that were
    elsewhere."""
    moved = 0
    for name, processes in groups.items():
        for p in processes:
            for tid in _threads(p.pid):
                # A thread or backend that just ended; not a refusal (postgres runs as another
                # user: moving it takes root or CAP_SYS_NICE).
                with contextlib.suppress(ProcessLookupError):
                    if os.sched_getaffinity(tid) != PINS[name]:
                        os.sched_setaffinity(tid, PINS[name])
                        moved += 1
    return moved


def affinities(groups: dict[str, list[psutil.Process]]) -> str:
    """Each group's cores, over all threads of its processes: `server on 0 (1 proc, 9
    threads)`."""
    said = []
    for name, processes in groups.items():
        cores: set[int] = set()
        tids = [tid for p in processes for tid in _threads(p.pid)]
        for tid in tids:
            with contextlib.suppress(OSError):
                cores |= os.sched_getaffinity(tid)
        cpus = ",".join(map(str, sorted(cores))) or "-"
        said.append(f"{name} on {cpus} ({len(processes)} proc, {len(tids)} threads)")
    return "; ".join(said)


def process_groups(
    server_pid: int, worker_pids: list[int], data_dir: Path
) -> dict[str, list[psutil.Process]]:
    groups = {"server": [psutil.Process(server_pid)], "db": _postgres(data_dir)}
    if worker_pids:
        groups["workers"] = [psutil.Process(pid) for pid in worker_pids]
    groups["client"] = [psutil.Process()]
    return groups


async def cpu_shares(
    server_pid: int,
    worker_pids: list[int],
    data_dir: Path,
    window: tuple[float, float],
    pinned: bool,
) -> dict[str, tuple[float, int]]:
    """CPU used in the window, in cores, and how many processes, by group: the server
    process, the embedded PostgreSQL, the worker processes, and this client. On a small
    machine they compete, and latency shows it. Pinned, the groups are checked (and moved
    back) as the window opens: backends forked since carry the postmaster's core."""
    await asyncio.sleep(max(0.0, window[0] - time.time()))
    groups = process_groups(server_pid, worker_pids, data_dir)
    if pinned:
        moved = pin(groups)
        print(f"pinned as the window opens ({moved} threads moved):", file=sys.stderr)
        print(f"  {affinities(groups)}", file=sys.stderr)
    before = {name: _cpu_seconds(ps) for name, ps in groups.items()}
    began = time.time()  # the loop may wake late; the cores are over the time sampled
    await asyncio.sleep(max(0.0, window[1] - time.time()))
    after = {name: _cpu_seconds(ps) for name, ps in groups.items()}
    seconds = time.time() - began
    return {name: ((after[name] - before[name]) / seconds, len(ps)) for name, ps in groups.items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


async def measure(
    url: str,
    clients: int,
    seconds: float,
    warmup: float,
    stagger: float,
    server_pid: int,
    worker_pids: list[int],
    data_dir: Path,
    pinned: bool,
) -> dict[str, Any]:
    # Idle connections are dropped before the server's keep-alive (5 s) closes them: a request
    # sent on one the server is closing at that moment fails (httpx.ReadError at setup).
    limits = httpx.Limits(max_connections=50, keepalive_expiry=2.0)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        gate = asyncio.Semaphore(50)

        async def opened() -> Client:
            async with gate:
                return await open_client(url, http)

        setup = time.time()
        sockets = await asyncio.gather(*(opened() for _ in range(clients)))
        setup = time.time() - setup
        start = time.time() + warmup  # every session is mid-answer by then
        rng = random.Random(1)
        window = (start, start + seconds)
        peak = 0.0

        async def sample() -> None:
            nonlocal peak
            while True:
                if time.time() >= start:
                    peak = max(peak, rss_mib(server_pid))
                await asyncio.sleep(0.5)

        sampler = asyncio.create_task(sample())
        cpu = asyncio.create_task(cpu_shares(server_pid, worker_pids, data_dir, window, pinned))
        # The load generator must not stall what it measures: a full collection of its heap
        # (every delta's latency is kept) took 68 ms, and every frame that arrived meanwhile
        # looked late by as much. It frees by reference counting for the run's 30 s.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            results = await asyncio.gather(
                *(converse(ws, window, rng.uniform(0, stagger)) for ws in sockets)
            )
        finally:
            gc.enable()
            gc.unfreeze()
        sampler.cancel()
        shares = await cpu
    latencies = [x for r in results for x in r.latencies]
    lost = sum(r.lost for r in results)
    duplicated = sum(r.duplicated + len(r.seqs) - len(set(r.seqs)) for r in results)
    tokens = sum(r.tokens for r in results)
    # The CPU each token cost: the group's cores over the window's length, per token counted
    # in it. Not the client's (it does not serve), nor a database not found (--database-url).
    per_token = {
        f"{name}_cpu_us_per_token": (
            round(cores * seconds / tokens * 1e6, 1) if tokens and processes else None
        )
        for name, (cores, processes) in shares.items()
        if name != "client"
    }
    return {
        "clients": clients,
        "tokens_per_s": round(tokens / seconds, 1),
        "frames_per_s": round(sum(r.frames for r in results) / seconds, 1),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 2),
        "lost": lost,
        "duplicated": duplicated,
        "mismatched_answers": sum(r.mismatched for r in results),
        "answers": sum(r.answers for r in results),
        "rss_mib": round(peak, 1),
        "setup_s": round(setup, 1),
        **{f"{name}_cpu_cores": round(cores, 2) for name, (cores, _) in shares.items()},
        **per_token,
        "pinned": pinned,
    }


async def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError("the server exited (its log is in the data directory)")
            try:
                await http.get(url + "/widget.js")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError("the server did not start")


def plot(record: Path, path: Path) -> None:
    """Latency and delivered tokens/s against sessions, one line per server layout."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    order: list[tuple[str, int]] = []  # series by their latest run, newest last
    for r in rows:
        key = (r.get("label", ""), r.get("workers", 0))
        if key in order:
            order.remove(key)
        order.append(key)
    fig, (lat, rate) = plt.subplots(1, 2, figsize=(10, 3.6))
    # The newest three series (older ones are in the record and the README), one colour each.
    for n, series in enumerate(order[-3:]):
        runs = sorted(
            (r for r in rows if (r.get("label", ""), r.get("workers", 0)) == series),
            key=lambda r: r["clients"],
        )
        name, workers = series
        label = "serve" if not workers else f"serve + {workers} worker"
        label = f"{label}, {name}" if name else label
        clients = [r["clients"] for r in runs]
        c = f"C{n}"
        lat.plot(clients, [r["p99_ms"] for r in runs], c=c, marker="o", label=f"p99, {label}")
        lat.plot(
            clients, [r["p50_ms"] for r in runs], c=c, marker=".", ls="--", label=f"p50, {label}"
        )
        rate.plot(clients, [r["tokens_per_s"] for r in runs], c=c, marker="o", label=label)
    top = max(r["clients"] for r in rows)
    lat.axhline(10, color="#c53030", lw=0.8, label="target p99 at 500: 10 ms")
    lat.set_yscale("log")
    lat.set_xlabel("sessions streaming at once")
    lat.set_ylabel("token to client, ms (log)")
    lat.legend(fontsize=7)
    rate.plot([0, top], [0, top * rows[0].get("tps", 20.0)], color="#999", ls=":", label="offered")
    rate.set_xlabel("sessions streaming at once")
    rate.set_ylabel("tokens delivered per second")
    rate.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--stagger",
        type=float,
        default=10.0,
        help="clients send their first message at random within this many seconds (users"
        " do not all press enter in the same millisecond)",
    )
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--tps", type=float, default=20.0, help="tokens per second per session")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run turns on this many `threadline worker` processes, the server only serving",
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on core 0, PostgreSQL and this load generator on core 1 (taskset)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--record", type=Path, help="append the result to this JSON-lines file")
    parser.add_argument("--label", default="", help="names the recorded run's series in --plot")
    parser.add_argument(
        "--plot", type=Path, help="only draw the recorded results (--record's file) as a PNG"
    )
    args = parser.parse_args()
    if args.plot:
        plot(args.record or ROOT / "benchmarks/results/streaming.jsonl", args.plot)
        return
    if args.pin:
        if not {0, 1} <= os.sched_getaffinity(0) or not shutil.which("taskset"):
            parser.error("--pin needs cores 0 and 1 and `taskset`")
        pin({"client": [psutil.Process()]})  # before any thread starts; children use taskset
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix="tl-stream-"))
    env = dict(
        os.environ,
        THREADLINE_DEMO_TOKENS_PER_SECOND=str(args.tps),
        THREADLINE_DATA_DIR=str(data_dir),
        PYTHONPATH=str(ROOT),
        # Thousands of sessions from one address: the per-address limits are not measured.
        THREADLINE_RATE_NEW_SESSIONS="off",
        THREADLINE_RATE_MESSAGES="off",
    )
    log_path = data_dir.with_suffix(".log")  # kept; the database directory is removed
    log = log_path.open("wb")  # a file, not a pipe nobody reads: the server never blocks
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
    cli = [sys.executable, "-m", "threadline.cli"]
    if args.pin:  # every thread the server starts, and PostgreSQL until it is moved, inherit it
        cli = ["taskset", "-c", ",".join(map(str, PINS["server"])), *cli]
    serve = [*cli, "serve", "--port", str(port), "--agents", "benchmarks.streaming:AGENTS"]
    server = subprocess.Popen(
        serve + (["--no-worker"] if args.workers else []),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        run_loop(wait_up(url, server))
        if args.pin:  # PostgreSQL started on the server's core: its postmaster and all so far
            groups = process_groups(server.pid, [], data_dir)
            moved = pin(groups)
            print(f"pinned once up ({moved} threads moved):", file=sys.stderr)
            print(f"  {affinities(groups)}", file=sys.stderr)
        worker = [*cli, "worker", "--app", "benchmarks.streaming:engine", "--concurrency", "1000"]
        for _ in range(args.workers):
            workers.append(
                subprocess.Popen(worker, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        result = run_loop(
            measure(
                url,
                args.clients,
                args.seconds,
                args.warmup,
                args.stagger,
                server.pid,
                [p.pid for p in workers],
                data_dir,
                args.pin,
            )
        )
    finally:
        for proc in workers:
            proc.terminate()
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            print("the server did not stop within 60 s of SIGTERM; killed", file=sys.stderr)
            server.kill()
            server.wait()
        for proc in workers:
            proc.wait(60)
        log.close()
        if _postgres(data_dir):  # a killed server's database outlives it
            print(f"the database under {data_dir} is still running: left", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
        print(f"server log: {log_path}", file=sys.stderr)
    if args.record:
        entry = {
            **result,
            "workers": args.workers,
            "tps": args.tps,
            "label": args.label,
            "date": time.strftime("%F"),
        }
        with args.record.open("a") as f:
            f.write(json.dumps(entry) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:>{width}}: {value}")


if __name__ == "__main__":
    main()
