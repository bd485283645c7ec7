"""What each hop of a streamed token costs the server: `benchmarks/streaming.py` runs, and
py-spy samples the server's process meanwhile; each sample is put on the hop of the deepest
frame of the token's path it is in (from the leaf up), and the hops' shares of the samples
are turned into µs per token with the benchmark's `server_cpu_us_per_token`.

The hops are those of docs/streaming.md. What is not on the path of a token is reported
beside it: the event log's batched write, the rest of a turn (its commits, the engine), the
event loop's own work (uvloop's C code, the sockets' system calls made by it), and the rest.

    python benchmarks/token_path.py                 # 500 clients, 15 s of samples
    python benchmarks/token_path.py --clients 200 --json

Needs `py-spy` (installed with the benchmarks' requirements) and permission to read another
process (root, or ptrace allowed).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Hops of one token, in order; a frame belongs to a hop when its text matches (`name
# (file)`, line numbers dropped). The deepest matching frame of a sample decides.
HOPS: list[tuple[str, str]] = [
    (
        "1 model: provider chunk → event",
        r"DemoModel|ScriptedModel|llm/demo|llm/(openai|anthropic|google|ollama)\.py"
        r"|asyncio/tasks\.py",
    ),
    (
        "2 model stack: metering, fallback, the call",
        r"MeteredModel|Meter\.|FallbackModel|router/durable\.py|Answer\.add|ResponseBuilder"
        r"|llm/model\.py|llm/events\.py",
    ),
    ("3 turn: the answer's piece", r"Turn\._ask|Screen\."),
    ("4 session log: live hand-over, queued", r"EventLog\.post|EventLog\._go_live|pending\.py|"
     r"frames\.py|EventLog\._enqueue"),
    ("5 hub → connection", r"Hub\.deliver_live|Connection\._live_now|Connection\._continues|"
     r"Connection\._fit|_Burst\.add"),
    ("6 socket: the frame written", r"_Burst\._flush|Connection\._drain|start_eagerly|"
     r"starlette/websockets|uvicorn/protocols/websockets|websockets/|_exception_handler|"
     r"security\.py|proxy_headers"),
]  # fmt: skip
BESIDE: list[tuple[str, str]] = [
    ("the log's batched write", r"EventLog\._run|EventLog\._write|EventLog\._tell|Hub\.deliver\b"),
    ("the rest of a turn (load, commits, engine)", r"threadline/"),
    ("database driver (asyncpg)", r"asyncpg/"),
    ("event loop (uvloop, C)", r"Runner\.run|asyncio/runners\.py"),
]


def classify(stack: list[str]) -> str:
    """The hop (or the work beside the path) a sample's stack, root first, belongs to."""
    for frame in reversed(stack):
        for name, pattern in HOPS:
            if re.search(pattern, frame):
                return name
    for frame in reversed(stack):
        for name, pattern in BESIDE:
            if re.search(pattern, frame):
                return name
    return "other"


def shares(raw: str) -> tuple[collections.Counter[str], int]:
    found: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        found[classify(frames)] += int(count)
        total += int(count)
    return found, total


def server_pid(timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["pgrep", "-f", "threadline.cli serve"], capture_output=True, text=True
        ).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.2)
    raise SystemExit("the benchmark's server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--sample-seconds", type=float, default=15.0)
    parser.add_argument("--pin", action="store_true", help="passed to streaming.py")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    warmup, stagger = 10.0, 10.0
    seconds = args.sample_seconds + 10
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "streaming.py"),
        f"--clients={args.clients}",
        f"--warmup={warmup}",
        f"--stagger={stagger}",
        f"--seconds={seconds}",
        "--json",
        *(["--pin"] if args.pin else []),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        bench = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        pid = server_pid()
        time.sleep(warmup + 2)  # sample inside the benchmark's window
        raw = Path(tmp) / "raw.txt"
        subprocess.run(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(int(args.sample_seconds)),
             "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(raw)],
            check=True, capture_output=True,
        )  # fmt: skip
        out, _ = bench.communicate(timeout=600)
        found, total = shares(raw.read_text())
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    per_token = float(result["server_cpu_us_per_token"])
    table = {name: round(per_token * found[name] / total, 1) for name, _ in [*HOPS, *BESIDE]}
    table["other"] = round(per_token * found["other"] / total, 1)
    report = {"clients": args.clients, "server_cpu_us_per_token": per_token, "hops": table}
    report["samples"] = total
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.clients} sessions: {per_token} µs of server CPU per token ({total} samples)")
    for name, cost in table.items():
        print(f"  {cost:6.1f} µs  {name}")


if __name__ == "__main__":
    main()
