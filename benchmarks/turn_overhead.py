"""What the engine adds to a chat turn: the demo model answers at once, everything else is
threadline's (DESIGN.md's target: p50 ≤ 5 ms).

One process (web-less: `Sessions` and the engine's worker, as `threadline serve` runs them) on
the embedded PostgreSQL. A user message goes in with `Sessions.send` (stored, its event
logged, the turn workflow started on the session's queue); the worker claims the turn, loads
the session, routes the call (budget admission, the model, the ledger row), streams the
answer into the session's log and commits the assistant message with the new state. A turn is
timed from `send` to its `message.end` event committed, when a reader would have it; the first
token's time is taken from the same clock. Turns run one at a time over `--sessions`
conversations (so histories grow as in a chat). The model's own time (composing and streaming
its answer with nothing around it) is timed on its own and reported beside: the overhead is
the turn's time less the model's.

    python benchmarks/turn_overhead.py
    python benchmarks/turn_overhead.py --json   # {"turns": ..., "p50_ms": ..., ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["THREADLINE_DEMO_TOKENS_PER_SECOND"] = "0"  # the model answers at once

from threadline import Engine, db  # noqa: E402
from threadline.agents import Agent, Turn  # noqa: E402
from threadline.llm import DemoModel, Message  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402
from threadline.loop import settle_heap  # noqa: E402
from threadline.sessions import Sessions  # noqa: E402
from threadline.sessions.events import Committed, Live  # noqa: E402

PROMPT = (
    "You answer questions about the Aqua 3 water filter. Context:\n## Filters\n"
    "The filter cartridge lasts six months. Reset the counter by holding the button for three "
    "seconds. The membrane is replaced every two years.\n## Orders\n"
    "Orders ship within two days. Returns are free for thirty days."
)
QUESTIONS = [
    "How long does the filter cartridge last?",
    "How do I reset the counter?",
    "When is the membrane replaced?",
    "How fast do orders ship?",
    "Are returns free?",
]

bench = Agent(name="bench", model="demo:threadline-demo", prompt=PROMPT)


@bench.state("start")
async def _answer(turn: Turn) -> str | None:
    await turn.reply()
    return None


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


class Watcher:
    """Times each turn from its message to its first delta and to its `message.end`."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.ended: dict[str, asyncio.Future[float]] = {}

    def expect(self, session_id: str) -> asyncio.Future[float]:
        self.first.pop(session_id, None)
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.ended[session_id] = future
        return future

    def live(self, piece: Live) -> bool:
        """A reader in this process (a WebSocket of `threadline serve`) takes the answer's
        pieces as they are made, before they are logged."""
        if piece.type == "message.delta":
            self.first.setdefault(piece.session_id, time.perf_counter())
        return True

    def __call__(self, events: list[Committed]) -> None:
        now = time.perf_counter()
        for event in events:
            if event.type == "message.delta":
                self.first.setdefault(event.session_id, now)
            elif event.type == "message.end":
                future = self.ended.pop(event.session_id, None)
                if future is not None and not future.done():
                    future.set_result(now)


async def model_alone(rounds: int) -> list[float]:
    """The demo model's own time for one answer (compose + stream), nothing around it."""
    model = DemoModel(tokens_per_second=0)
    messages = [Message.system(PROMPT), Message.user(QUESTIONS[0])]
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        async for _event in model.stream(messages, max_tokens=1024):
            pass
        timings.append((time.perf_counter() - started) * 1000)
    return timings


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    url = args.database_url or db.start_embedded(db.temporary_data_dir("tl-bench-"))
    async with Engine(url) as engine:
        sessions = Sessions(engine, [bench])
        watcher = Watcher()
        sessions.events.listen(watcher)
        if args.live:
            sessions.events.watch_live(watcher.live)
        ids = [(await sessions.create("bench")).id for _ in range(args.sessions)]
        settle_heap()
        totals: list[float] = []
        firsts: list[float] = []
        for n in range(args.warmup + args.turns):
            session_id = ids[n % len(ids)]
            ended = watcher.expect(session_id)
            started = time.perf_counter()
            await sessions.send(session_id, QUESTIONS[n % len(QUESTIONS)], f"m{n}")
            finished = await asyncio.wait_for(ended, 30)
            if n >= args.warmup:
                totals.append((finished - started) * 1000)
                firsts.append((watcher.first[session_id] - started) * 1000)
        await sessions.models.aclose()
    model = await model_alone(200)
    model_p50 = statistics.median(model)
    return {
        "turns": len(totals),
        "p50_ms": round(statistics.median(totals), 2),
        "p99_ms": round(percentile(totals, 99), 2),
        "first_token_p50_ms": round(statistics.median(firsts), 2),
        "first_token_p99_ms": round(percentile(firsts, 99), 2),
        "model_p50_ms": round(model_p50, 2),
        "overhead_p50_ms": round(statistics.median(totals) - model_p50, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", default=None, help="default: an embedded PostgreSQL")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=30, help="conversations turns rotate over")
    parser.add_argument(
        "--live",
        action="store_true",
        help="a reader in this process takes the answer's pieces live (as a WebSocket of "
        "`threadline serve` does); default: a reader elsewhere, which has each event once it "
        "is committed",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = run_loop(measure(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}  {value}")


if __name__ == "__main__":
    main()
