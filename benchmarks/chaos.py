"""Faults under load: workflow runs and chat turns while processes are SIGKILLed and
PostgreSQL restarts, then what the database and the clients say was lost, repeated or stuck.

Set-up. This script starts an embedded PostgreSQL on a temporary data directory
(`threadline.db.start_embedded`), sets a budget on the tenant every call belongs to
(`threadline budgets set tenant:chaos 1000`), prices the offline demo model with a
`THREADLINE_PRICES` override (3 / 15 USD per million input / output tokens, so every call
reserves its worst case and costs money) and paces it with `THREADLINE_DEMO_TOKENS_PER_SECOND`,
then runs two `threadline worker --app benchmarks.chaos_app:engine` processes and one
`threadline serve` (the demo bots), all on that database (`DATABASE_URL`) and one code version.
The workers run `chaos.order` (benchmarks/chaos_app.py: three bodies that write each execution
to `chaos.step_executions`, a routed and a plain model call, under the workflow's
`Budget(usd=0.50)`) and chat turns; the server's worker runs turns.

Load, for `--duration` seconds: `chaos.order` runs started by this process at `--rate` a
second (Poisson arrivals), and `--clients` WebSocket clients, each talking to the memoir bot
(one session per `--turns` messages, tenant `chaos`): send a message, wait for its
`message.end`, think a moment, send the next. A client whose connection drops reconnects and
sends `resume {after_seq, turn_id, started, shown}` (docs/protocol.md), and sends its message
again (same `client_id`) if its `message.user` never came back.

Faults, at random moments of the same window (`--seed`): `--kills` SIGKILLs, each of a
random one of the three processes, started again at once; `--pg-restarts` restarts of
PostgreSQL (`pg_ctl restart -w`, `-m fast` and `-m immediate` alternately). A process that
exits by itself is started again too, and reported. Then the load stops and the script waits
up to `--drain` seconds for the runs and the clients' answers to finish.

What is reported (the target is 0 for every count, and resume p99 <= 2 s; nothing is
asserted here: tests/test_chaos.py asserts a shorter run):

- runs: `chaos.order` runs started (acknowledged by `Engine.start`), succeeded, failed, lost
  (acknowledged, yet no row), unfinished at the end, and stuck: pending or running with no
  progress for more than 10 s (progress: a change of status or owner, a new step record, or
  for a turn a new event in its session; sampled every 0.5 s). The same for turn runs.
- step bodies re-run after their step record had committed: an execution row written later
  than the record's `steps.created_at` (the start of the transaction that wrote it).
  Re-runs before the record was durable are at-least-once by design, and shown apart; among
  them, those that began while another live process was still in the same body (two owners
  of one run at once).
- calls bought twice: more than one `ok` row in `threadline.llm_calls` for one
  `(run_id, step_no)` (turns' calls carry their run too).
- rows settled by recovery: ledger rows recovery wrote for a reservation whose holder
  stopped heartbeating (`error_code = 'interrupted'`, `estimated`), and how many of them at
  the reservation's worst case (`cost_usd = reserved_usd`). Expected after a SIGKILL of the
  process that held it; *extra* when the holder's process (its pid, from `budget_holders`,
  sampled with the open reservations every 0.5 s) was never killed, *unattributed* when the
  sampling never saw the reservation.
- chat, from the event log: turns (user messages) whose `message.end` is missing or appears
  more than once, user messages whose `message.user` is not there exactly once, answers
  stored twice, and gaps in a session's numbers (the log against `sessions.event_seq`); from
  the clients: answers they never got or got twice, logged events (other than an answer's
  beginning and pieces, which may come live) they never got up to the last one they got, or
  got twice, and answers whose pieces, placed by offset, did not add up to the final text.
- charged vs actual: the ledger's sum of `cost_usd`, against what the calls' real token
  counts cost at the override's prices. A row with real counts counts as it is. A call that
  recovery settled counts its prompt and the share of its answer the demo model had
  streamed (at its pace, from the reservation) when its process was killed; the whole
  answer's tokens come from the same step answered again (same prompt, same answer).
- resume time: for each SIGKILL, the runs the killed process owned (status `running`, owner
  = its worker id) just before the signal; a run's resume time is from the signal to its
  first durable progress elsewhere: a step record, its outcome or (a turn) an event of its
  session, written by a transaction that began after the signal (`steps.created_at`,
  `runs.finished_at`, `session_events.at`). It spans noticing the death (the recovery pass),
  the claim, the replay and re-running the step that was cut. Runs that had finished just
  before the signal are left out; runs that never progressed are counted apart.

    python benchmarks/chaos.py                                  # 300 s, 100 kills, 5 restarts
    python benchmarks/chaos.py --duration 60 --kills 10 --pg-restarts 1 --json
    python benchmarks/chaos.py --record benchmarks/results/chaos.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets
from websockets.exceptions import WebSocketException

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import chaos_app  # noqa: E402
from threadline import Engine, db  # noqa: E402
from threadline.loop import run as run_loop  # noqa: E402
from threadline.sessions.events import ANSWER_TYPES  # noqa: E402

VERSION = "chaos"  # one code version for every process: they claim each other's turns
ADMIN_KEY = "chaos-admin-key"
SECRET = "chaos-benchmark-secret-of-32-bytes!"
AGENT = "memoir"
PRICES = {"input_per_mtok": 3.0, "output_per_mtok": 15.0}
TENANT_BUDGET_USD = "1000"
STUCK_AFTER_S = 10.0
SAMPLE_EVERY_S = 0.5
TURN_WORKFLOW = "threadline.turn"
ROLES = ("worker-1", "worker-2", "server")


@dataclass
class Settings:
    duration: float = 300.0
    kills: int = 100
    pg_restarts: int = 5
    rate: float = 3.0  # chaos.order runs started per second
    clients: int = 6
    turns: int = 6  # messages per chat session
    tps: float = 60.0  # the demo model's pace, tokens per second
    drain: float = 90.0
    seed: int = 1
    logs: Path | None = None  # where to copy the processes' logs


# -- processes ----------------------------------------------------------------------------------


class Child:
    """One threadline process, started again after each kill."""

    def __init__(self, role: str, args: list[str], env: dict[str, str], log: Path) -> None:
        self.role, self.args, self.env, self.log = role, args, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits: list[dict[str, Any]] = []  # exits this script did not cause

    def spawn(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "threadline.cli", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()

    def last_line(self) -> str:
        with self.log.open("rb") as f:
            f.seek(max(0, self.log.stat().st_size - 4000))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """The database and the three processes on it."""

    def __init__(self, settings: Settings) -> None:
        self.root = db.temporary_data_dir("threadline-chaos-")
        self.url = ""
        self.port = free_port()
        self.children: dict[str, Child] = {}
        self.pg_restarting = False
        self.settings = settings

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        prices = self.root / "prices.json"
        prices.write_text(json.dumps({chaos_app.MODEL: PRICES}))
        return dict(
            os.environ,
            DATABASE_URL=self.url,
            THREADLINE_APP_VERSION=VERSION,
            THREADLINE_PRICES=str(prices),
            THREADLINE_DEMO_TOKENS_PER_SECOND=str(self.settings.tps),
            THREADLINE_SECRET=SECRET,
            THREADLINE_ADMIN_KEY=ADMIN_KEY,
            THREADLINE_DATA_DIR=str(self.root),
            THREADLINE_EMBEDDER="hash",
            THREADLINE_RATE_MESSAGES="off",  # every client is on this machine's address
            THREADLINE_RATE_SESSION_MESSAGES="off",
            PYTHONUNBUFFERED="1",
        )

    async def start_database(self) -> None:
        self.url = await asyncio.to_thread(db.start_embedded, self.root, "postgres")

    def start_processes(self) -> None:
        env = self.env()
        worker = ["worker", "--app", "benchmarks.chaos_app:engine"]
        serve = ["serve", "--port", str(self.port)]
        for role, args in (("worker-1", worker), ("worker-2", worker), ("server", serve)):
            self.children[role] = Child(role, args, env, self.root / f"{role}.log")
            self.children[role].spawn()

    async def supervise(self, stop: asyncio.Event) -> None:
        """Start again any process that exited by itself (and say so in the report)."""
        while not stop.is_set():
            for child in self.children.values():
                assert child.proc is not None
                code = child.proc.poll()
                if code is not None:
                    child.exits.append(
                        {
                            "seen_at": round(time.time(), 3),
                            "pid": child.pid,
                            "code": code,
                            "during_pg_restart": self.pg_restarting,
                            "last_line": child.last_line(),
                        }
                    )
                    child.spawn()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    async def restart_database(self, mode: str) -> dict[str, Any]:
        self.pg_restarting = True
        began, started = time.time(), time.monotonic()
        error = None
        try:
            await asyncio.to_thread(db.restart_embedded, self.root, mode)
        except Exception as exc:  # reported; the run goes on with whatever is left
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.pg_restarting = False
        seconds = round(time.monotonic() - started, 2)
        return {"began": round(began, 3), "mode": mode, "seconds": seconds, "error": error}

    async def stop(self, logs: Path | None = None) -> None:
        await asyncio.gather(*(asyncio.to_thread(c.stop) for c in self.children.values()))
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
            for child in self.children.values():
                shutil.copy(child.log, logs / child.log.name)
        if self.url:  # now, not when this process exits (its last user): tests go on
            await asyncio.to_thread(db.stop_embedded, self.root)


async def until_ready(cluster: Cluster, engine: Engine, timeout: float = 90.0) -> None:
    """The server answers HTTP and both workers have registered."""
    deadline = time.monotonic() + timeout
    pids = [cluster.children[r].pid for r in ("worker-1", "worker-2")]
    async with httpx.AsyncClient() as http:
        while True:
            with contextlib.suppress(httpx.TransportError):
                up = (await http.get(cluster.http_url + "/widget.js")).status_code == 200
                found = await engine.pool.fetchval(
                    "SELECT count(*) FROM threadline.workers WHERE pid = ANY($1::int[])", pids
                )
                if up and found == len(pids):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the processes did not come up; logs in {cluster.root}")
            await asyncio.sleep(0.2)


# -- watching the database ----------------------------------------------------------------------

PROGRESS = """
SELECT r.id, r.workflow, r.status, r.owner,
       (SELECT count(*) FROM threadline.steps s WHERE s.run_id = r.id) AS steps,
       (SELECT x.event_seq FROM threadline.sessions x
        WHERE r.workflow = 'threadline.turn' AND x.id = r.queue_key) AS events
FROM threadline.runs r
WHERE r.status IN ('pending', 'running') AND r.workflow = ANY($1::text[])
"""

DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)

HELD = """
SELECT r.id, r.workflow, r.queue_key FROM threadline.runs r
WHERE r.status = 'running' AND r.owner = (SELECT max(id) FROM threadline.workers WHERE pid = $1)
"""


@dataclass
class Kill:
    at: float  # time.time() just before the signal
    role: str
    pid: int
    held: list[tuple[str, str, str | None]] | None  # (run, workflow, queue key); None: unknown


class Observer:
    """Samples the database every 0.5 s: which runs make no progress, and who holds which
    budget reservation (recovery deletes both the reservation and, later, its holder)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self.holder_of: dict[int, int] = {}  # reservation -> holder
        self.pid_of: dict[int, int] = {}  # holder -> pid
        self._since: dict[str, tuple[tuple[Any, ...], float]] = {}  # run -> (state, since)
        self.stall: dict[str, float] = {}  # run -> longest time without progress
        self.workflow_of: dict[str, str] = {}
        self.failed_samples = 0

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
        self._conn = None

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await asyncpg.connect(self.url, timeout=2)
        return self._conn

    async def sample(self) -> None:
        async with self._lock:
            try:
                conn = await self._connection()
                rows = await conn.fetch(PROGRESS, [chaos_app.WORKFLOW, TURN_WORKFLOW], timeout=3)
                for r in await conn.fetch("SELECT id, holder FROM threadline.budget_reservations"):
                    self.holder_of[r["id"]] = r["holder"]
                for r in await conn.fetch("SELECT id, pid FROM threadline.budget_holders"):
                    self.pid_of[r["id"]] = r["pid"]
            except DB_ERRORS:
                self.failed_samples += 1
                self._drop()
                return
        now = time.time()
        seen = set()
        for r in rows:
            run, state = r["id"], (r["status"], r["owner"], r["steps"], r["events"])
            seen.add(run)
            self.workflow_of[run] = r["workflow"]
            before = self._since.get(run)
            if before is None or before[0] != state:
                self._since[run] = (state, now)
            self.stall[run] = max(self.stall.get(run, 0.0), now - self._since[run][1])
        for run in set(self._since) - seen:
            del self._since[run]

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)

    async def held(self, pid: int) -> list[tuple[str, str, str | None]] | None:
        """The runs a process owns now (None when the database does not answer in 1 s)."""
        try:
            async with asyncio.timeout(1.0), self._lock:
                conn = await self._connection()
                rows = await conn.fetch(HELD, pid)
        except DB_ERRORS:
            self._drop()
            return None
        return [(r["id"], r["workflow"], r["queue_key"]) for r in rows]

    async def close(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()


# -- load: workflow runs ------------------------------------------------------------------------


class Orders:
    """Starts `chaos.order` runs at random moments, `rate` a second on average."""

    def __init__(self, engine: Engine, rate: float, rng: random.Random) -> None:
        self.engine, self.rate, self.rng = engine, rate, rng
        self.acked: dict[str, float] = {}
        self.errors: Counter[str] = Counter()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            task = asyncio.create_task(self._start(n))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.expovariate(self.rate))

    async def _start(self, n: int) -> None:
        run_id = f"order-{n}"
        try:
            await self.engine.start(chaos_app.WORKFLOW, n, run_id=run_id)
        except Exception as exc:  # a start refused while the database was away
            self.errors[type(exc).__name__] += 1
            return
        self.acked[run_id] = time.time()


# -- load: chat clients -------------------------------------------------------------------------


@dataclass
class ClientStats:
    sent: int = 0
    answered: int = 0
    missing: int = 0  # messages whose answer never came
    failed: int = 0  # messages whose turn failed (message.error)
    duplicate_answers: int = 0  # message.end frames beyond the first for a turn
    seq_duplicates: int = 0  # logged frames whose number had already come
    garbled: int = 0  # answers whose pieces did not add up to the final text
    reconnects: int = 0
    sessions: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    garbled_examples: list[dict[str, Any]] = field(default_factory=list)
    reconnected_at: list[float] = field(default_factory=list)


class View:
    """What one client has of one session: the last number seen, and each answer as shown."""

    def __init__(self, session_id: str, stats: ClientStats) -> None:
        self.session_id, self.stats = session_id, stats
        self.last_seq = 0
        self.seen: set[int] = set()  # logged frames received (the logged copy of a live
        # piece is not sent to the client that had it live: numbers skip, by design)
        self.turn_of: dict[str, str] = {}  # client id -> turn id
        self.ends: Counter[str] = Counter()
        self.failed: set[str] = set()  # turns that logged message.error
        self.gaps: dict[str, tuple[float, int, int]] = {}  # turn -> first (when, had, offset)
        self.text: dict[str, str] = {}  # turn -> its text since its last (re)start
        self.started: dict[str, Any] = {}
        self.current: str | None = None

    def show(self, frame: dict[str, Any]) -> None:
        seq = frame.get("seq")
        if seq is not None:
            if seq in self.seen or seq <= self.last_seq:
                self.stats.seq_duplicates += 1
                return
            self.seen.add(seq)
            self.last_seq = seq
        kind, turn = frame["type"], frame.get("turn_id", "")
        if kind == "message.user":
            self.turn_of[frame["client_id"]] = f"turn:{self.session_id}:{frame['message_seq']}"
        elif kind in ("message.start", "message.restart"):
            if turn not in self.started or frame.get("ts") != self.started[turn]:
                self.text[turn], self.started[turn] = "", frame.get("ts")
            self.current = turn
        elif kind == "message.delta":
            self._piece(turn, frame["offset"], frame["text"])
        elif kind == "message.end":
            self.ends[turn] += 1
            shown = self.text.get(turn)
            if self.ends[turn] == 1 and shown is not None and shown != frame["text"]:
                self.stats.garbled += 1
                example = {"turn": turn, "shown": shown, "end": frame["text"]}
                if turn in self.gaps:
                    at, had, offset = self.gaps[turn]
                    before = [t for t in self.stats.reconnected_at if t <= at]
                    since = round(at - before[-1], 3) if before else None
                    example |= {"gap": f"at {at}: had {had}, piece at {offset}"}
                    example |= {"seconds_since_reconnect": since}
                self.stats.garbled_examples.append(example)
            if turn == self.current:
                self.current = None
        elif kind == "message.error":
            self.failed.add(turn)
        elif kind == "error":
            self.stats.errors[frame.get("code", "?")] += 1

    def _piece(self, turn: str, offset: int, piece: str) -> None:
        text = self.text.setdefault(turn, "")
        if offset > len(text):  # a gap: marked, and counted when the end does not match
            self.gaps.setdefault(turn, (round(time.time(), 3), len(text), offset))
            self.text[turn] = text + "\ufffd" * (offset - len(text)) + piece
        elif offset + len(piece) > len(text):  # what it has is a repeat: skip it
            self.text[turn] = text + piece[len(text) - offset :]

    def answered(self, client_id: str) -> bool:
        turn = self.turn_of.get(client_id)
        return turn is not None and (self.ends[turn] > 0 or turn in self.failed)

    def resume(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "resume", "after_seq": self.last_seq}
        if self.current is not None and self.current in self.text:
            frame.update(
                turn_id=self.current,
                started=self.started[self.current],
                shown=len(self.text[self.current]),
            )
        return frame


CONNECTION_ERRORS = (OSError, TimeoutError, WebSocketException, httpx.TransportError)


class ChatClient:
    """Talks to the memoir bot, one session per `turns` messages, through every kill."""

    def __init__(self, k: int, base_url: str, turns: int, rng: random.Random) -> None:
        self.k, self.base_url, self.turns, self.rng = k, base_url, turns, rng
        self.stats = ClientStats()
        self.views: list[View] = []

    async def run(self, stop: asyncio.Event, deadline: float) -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            while not stop.is_set() and time.monotonic() < deadline:
                session = await self._create(http, deadline)
                if session is None:
                    return
                self.stats.sessions += 1
                await self._converse(session, stop, deadline)

    async def _create(self, http: httpx.AsyncClient, deadline: float) -> dict[str, Any] | None:
        body = {"agent": AGENT, "tenant": chaos_app.TENANT, "user": f"chat-{self.k}"}
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        while time.monotonic() < deadline:
            with contextlib.suppress(*CONNECTION_ERRORS):
                r = await http.post(self.base_url + "/v1/sessions", json=body, headers=headers)
                if r.status_code == 201:
                    session: dict[str, Any] = r.json()
                    return session
            await asyncio.sleep(0.25)
        return None

    async def _converse(
        self, session: dict[str, Any], stop: asyncio.Event, deadline: float
    ) -> None:
        sid = session["session_id"]
        ws_url = self.base_url.replace("http", "ws") + f"/v1/sessions/{sid}/ws?token="
        view = View(sid, self.stats)
        self.views.append(view)
        waiting: dict[str, Any] | None = None  # the message whose answer has not come
        sent = 0
        while time.monotonic() < deadline:
            try:
                async with websockets.connect(
                    ws_url + session["token"], open_timeout=5, ping_interval=None, max_size=None
                ) as ws:
                    await ws.recv()  # session.state
                    await ws.send(json.dumps(view.resume()))
                    if waiting is not None and waiting["client_id"] not in view.turn_of:
                        await ws.send(json.dumps(waiting))  # it may never have arrived
                    while True:
                        if waiting is None:
                            if stop.is_set() or sent >= self.turns:
                                return
                            await asyncio.sleep(self.rng.uniform(0.1, 0.8))  # a user thinks
                            sent += 1
                            waiting = self._message(f"c{self.k}-{sid[-8:]}-{sent}", sent)
                            self.stats.sent += 1
                            await ws.send(json.dumps(waiting))
                        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                            view.show(json.loads(await ws.recv()))
                        if view.answered(waiting["client_id"]):
                            turn = view.turn_of[waiting["client_id"]]
                            self.stats.answered += view.ends[turn] > 0
                            waiting = None
            except CONNECTION_ERRORS:
                if time.monotonic() >= deadline:
                    break
                self.stats.reconnects += 1
                await asyncio.sleep(0.25)
                self.stats.reconnected_at.append(time.time())
        self.stats.missing += waiting is not None
        self.stats.failed += len(view.failed)
        self.stats.duplicate_answers += sum(n - 1 for n in view.ends.values() if n > 1)

    def _message(self, client_id: str, n: int) -> dict[str, Any]:
        city = self.rng.choice(["Lyon", "Porto", "Gdansk", "Tartu", "Bergen", "Trieste"])
        text = f"({n}) I grew up in {city} in {1940 + n * 3}; my father mended boats there."
        return {"type": "message.send", "client_id": client_id, "text": text}


# -- faults -------------------------------------------------------------------------------------


def plan_faults(settings: Settings, rng: random.Random) -> list[tuple[float, str]]:
    """(seconds after the load starts, "kill" or a pg_ctl mode), in time order."""
    margin = min(5.0, settings.duration / 10)
    lo, hi = margin, settings.duration - margin
    faults = [(rng.uniform(lo, hi), "kill") for _ in range(settings.kills)]
    modes = ("fast", "immediate")
    faults += [(rng.uniform(lo, hi), modes[i % 2]) for i in range(settings.pg_restarts)]
    return sorted(faults)


async def unleash(
    cluster: Cluster,
    observer: Observer,
    plan: list[tuple[float, str]],
    t0: float,
    rng: random.Random,
) -> tuple[list[Kill], list[dict[str, Any]]]:
    kills: list[Kill] = []
    restarts: list[dict[str, Any]] = []
    for at, what in plan:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        if what == "kill":
            child = cluster.children[rng.choice(ROLES)]
            held = await observer.held(child.pid)
            kill = Kill(time.time(), child.role, child.pid, held)
            child.kill()
            child.spawn()  # at once: no await between, so the supervisor never sees it dead
            kills.append(kill)
        else:
            restarts.append(await cluster.restart_database(what))
    return kills, restarts


# -- what the database says afterwards ----------------------------------------------------------


async def runs_report(
    conn: asyncpg.Connection, workflow: str, observer: Observer, acked: dict[str, float] | None
) -> dict[str, Any]:
    rows = await conn.fetch("SELECT id, status FROM threadline.runs WHERE workflow = $1", workflow)
    status = {r["id"]: r["status"] for r in rows}
    by_status = Counter(status.values())
    stuck = sorted(
        run
        for run, stall in observer.stall.items()
        if stall > STUCK_AFTER_S and observer.workflow_of.get(run) == workflow
    )
    stalls = [s for run, s in observer.stall.items() if observer.workflow_of[run] == workflow]
    found: dict[str, Any] = {
        "rows": len(status),
        "succeeded": by_status["succeeded"],
        "failed": by_status["failed"],
        "unfinished": by_status["pending"] + by_status["running"],
        "stuck": len(stuck),
        "longest_stall_s": round(max(stalls, default=0.0), 2),
        "examples": {"stuck": stuck[:5]},
    }
    if acked is not None:
        lost = sorted(set(acked) - set(status))
        found |= {"started": len(acked), "lost": len(lost)}
        found["examples"]["lost"] = lost[:5]
    failed = [r for r, s in status.items() if s == "failed"]
    if failed:
        errors = await conn.fetch(
            "SELECT id, error FROM threadline.runs WHERE id = ANY($1::text[]) LIMIT 5", failed
        )
        found["examples"]["failed"] = {r["id"]: json.loads(r["error"]) for r in errors}
    return found


RERUNS = """
SELECT e.run_id, e.step_no, e.pid, extract(epoch FROM e.at)::float8 AS at,
       extract(epoch FROM s.created_at)::float8 AS recorded_at
FROM chaos.step_executions e
LEFT JOIN threadline.steps s ON s.run_id = e.run_id AND s.step_no = e.step_no
ORDER BY e.run_id, e.step_no, e.at
"""


async def steps_report(conn: asyncpg.Connection, kills: list[Kill]) -> dict[str, Any]:
    """Bodies that ran again: after their record (never allowed), and while an earlier
    execution of another process was still working (two owners of one run at once)."""
    rows = await conn.fetch(RERUNS)
    killed_at = {k.pid: k.at for k in kills}
    after_commit, overlapping, reruns = [], [], 0
    for before, row in itertools.pairwise(rows):
        if (before["run_id"], before["step_no"]) != (row["run_id"], row["step_no"]):
            continue
        reruns += 1
        step = f"{row['run_id']} step {row['step_no']}"
        if row["recorded_at"] is not None and row["at"] > row["recorded_at"]:
            after_commit.append(step)
        still_working = row["at"] < before["at"] + chaos_app.STEP_SECONDS
        alive = killed_at.get(before["pid"], math.inf) > row["at"]
        if still_working and alive and row["pid"] != before["pid"]:
            overlapping.append(f"{step}: pids {before['pid']}, {row['pid']}")
    return {
        "executions": len(rows),
        "reruns": reruns,
        "reruns_after_commit": len(after_commit),
        "reruns_alongside": len(overlapping),
        "examples": {"after_commit": after_commit[:5], "alongside": overlapping[:5]},
    }


def _usd(input_tokens: int, output_tokens: int) -> Decimal:
    rates = {k: Decimal(str(v)) for k, v in PRICES.items()}
    total = input_tokens * rates["input_per_mtok"] + output_tokens * rates["output_per_mtok"]
    return total / Decimal(1_000_000)


LEDGER = """
SELECT c.id, c.at, c.status, c.error_code, c.estimated, c.run_id, c.step_no, c.input_tokens,
       c.output_tokens, c.cost_usd, c.reserved_usd, c.reservation_id, c.latency_ms,
       s.created_at AS recorded_at, s.output::text AS step_output
FROM threadline.llm_calls c
LEFT JOIN threadline.steps s ON s.run_id = c.run_id AND s.step_no = c.step_no
ORDER BY c.id
"""


def _recovered(row: asyncpg.Record) -> bool:
    """A row recovery wrote for a reservation whose holder stopped heartbeating."""
    return bool(row["error_code"] == "interrupted" and row["estimated"])


def _answer_words(step_output: str | None) -> int:
    """Words of the answer a model-call step recorded (a routed one nests it)."""
    out = json.loads(step_output) if step_output else None
    if isinstance(out, dict):
        text = (out.get("response") or out).get("text")
        if isinstance(text, str):
            return len(text.split())
    return 0


def cut_call_cost(
    row: asyncpg.Record, answered: dict[tuple[str, int], tuple[int, int]], cut_at: float, tps: float
) -> Decimal | None:
    """What a call that recovery settled really consumed: its prompt, and the share of its
    answer the demo model had streamed (a word every 1/tps s from the reservation) when its
    process was killed (`cut_at`; inf: never). Its step, answered again after the kill, gives
    the whole answer's tokens: same prompt, same answer. None: not known."""
    full = answered.get((row["run_id"], row["step_no"]))
    words = _answer_words(row["step_output"])
    if full is None or not words:
        return None
    began = row["at"].timestamp() - row["latency_ms"] / 1000
    share = min(1.0, max(0.0, (cut_at - began) * tps / words))
    return _usd(full[0], round(full[1] * share))


async def ledger_report(
    conn: asyncpg.Connection, observer: Observer, kills: list[Kill], tps: float
) -> dict[str, Any]:
    rows = await conn.fetch(LEDGER)
    ok = [r for r in rows if r["status"] == "ok" and r["run_id"]]
    per_step = Counter((r["run_id"], r["step_no"]) for r in ok)
    twice = sorted(step for step, n in per_step.items() if n > 1)
    answered = {(r["run_id"], r["step_no"]): (r["input_tokens"], r["output_tokens"]) for r in ok}
    killed_at = {k.pid: k.at for k in kills}
    recovered = [r for r in rows if _recovered(r)]
    extra, unattributed, unknown = [], [], 0
    charged = actual = Decimal(0)
    for r in rows:
        charged += r["cost_usd"] or 0
        if not _recovered(r):
            actual += _usd(r["input_tokens"], r["output_tokens"])
            continue
        pid = observer.pid_of.get(observer.holder_of.get(r["reservation_id"], -1))
        if pid is None:
            unattributed.append(r["id"])
        elif pid not in killed_at:
            extra.append(f"row {r['id']}: {r['run_id']} step {r['step_no']}, pid {pid}")
        cost = (
            None if pid is None else cut_call_cost(r, answered, killed_at.get(pid, math.inf), tps)
        )
        unknown += cost is None
        actual += (r["cost_usd"] or 0) if cost is None else cost
    found = await conn.fetch(
        "SELECT id, recoveries FROM threadline.runs WHERE id = ANY($1::text[])",
        [run for run, _ in twice],
    )
    recoveries: dict[str, int] = {r["id"]: r["recoveries"] for r in found}
    return {
        "calls": len(rows),
        "ok": len(ok),
        "bought_twice": len(twice),
        "recovered_rows": len(recovered),
        "recovered_at_worst_case": sum(r["cost_usd"] >= r["reserved_usd"] for r in recovered),
        "extra_recovered_rows": len(extra),
        "unattributed_recovered_rows": len(unattributed),
        "charged_usd": float(charged),
        "actual_usd": float(actual),
        "actual_unknown_rows": unknown,  # counted at their charge
        "examples": {
            "bought_twice": [
                _step_rows(rows, step) | {"run_recoveries": recoveries.get(step[0])}
                for step in twice[:3]
            ],
            "extra_recovered": extra[:5],
        },
    }


def _step_rows(rows: list[asyncpg.Record], step: tuple[str, int]) -> dict[str, Any]:
    """Evidence: a step's ledger rows and when its record was written."""
    mine = [r for r in rows if (r["run_id"], r["step_no"]) == step]
    return {
        "step": f"{step[0]} step {step[1]}",
        "recorded_at": mine[0]["recorded_at"].isoformat() if mine[0]["recorded_at"] else None,
        "rows": [
            {
                "id": r["id"],
                "at": r["at"].isoformat(),
                "status": r["status"],
                "error_code": r["error_code"],
                "cost_usd": float(r["cost_usd"] or 0),
                "reservation_id": r["reservation_id"],
                "latency_ms": round(r["latency_ms"]),
            }
            for r in mine
        ],
    }


CHAT_LOG = """
SELECT s.id, s.event_seq,
       (SELECT count(*) FROM threadline.session_events e WHERE e.session_id = s.id) AS events,
       (SELECT coalesce(max(e.seq), 0) FROM threadline.session_events e
        WHERE e.session_id = s.id) AS max_seq
FROM threadline.sessions s WHERE s.tenant = $1
"""

CHAT_TURNS = """
SELECT m.session_id || ':' || m.seq AS turn,
       (SELECT count(*) FROM threadline.session_events e WHERE e.session_id = m.session_id
          AND e.type = 'message.end'
          AND e.data->>'turn_id' = 'turn:' || m.session_id || ':' || m.seq) AS ends,
       (SELECT count(*) FROM threadline.session_events e WHERE e.session_id = m.session_id
          AND e.type = 'message.user' AND e.data->>'client_id' = m.client_id) AS users,
       (SELECT count(*) FROM threadline.session_messages a WHERE a.session_id = m.session_id
          AND a.role = 'assistant' AND a.turn_id = 'turn:' || m.session_id || ':' || m.seq)
          AS answers,
       (SELECT count(*) FROM threadline.session_events e WHERE e.session_id = m.session_id
          AND e.type = 'message.error'
          AND e.data->>'turn_id' = 'turn:' || m.session_id || ':' || m.seq) AS errors
FROM threadline.session_messages m JOIN threadline.sessions s ON s.id = m.session_id
WHERE s.tenant = $1 AND m.role = 'user'
"""


async def events_missed(conn: asyncpg.Connection, views: list[View]) -> int:
    """Logged events, other than an answer's beginning and pieces (those may have come live,
    and a wrong answer shows at its end), that a client never got, up to the last it got."""
    rows = await conn.fetch(
        "SELECT session_id, seq, type FROM threadline.session_events"
        " WHERE session_id = ANY($1::text[])",
        [v.session_id for v in views],
    )
    view_of = {v.session_id: v for v in views}
    return sum(
        1
        for r in rows
        if r["type"] not in ANSWER_TYPES
        and r["seq"] <= view_of[r["session_id"]].last_seq
        and r["seq"] not in view_of[r["session_id"]].seen
    )


async def chat_report(conn: asyncpg.Connection, clients: list[ChatClient]) -> dict[str, Any]:
    logs = await conn.fetch(CHAT_LOG, chaos_app.TENANT)
    turns = await conn.fetch(CHAT_TURNS, chaos_app.TENANT)
    gaps = sum(max(r["event_seq"], r["max_seq"]) - r["events"] for r in logs)
    missing_end = [r["turn"] for r in turns if r["ends"] == 0]
    duplicate_end = [r["turn"] for r in turns if r["ends"] > 1]
    stats = [c.stats for c in clients]
    return {
        "sessions": len(logs),
        "turns": len(turns),
        "log_missing_end": len(missing_end),
        "log_duplicate_end": len(duplicate_end),
        "log_user_event_not_once": sum(r["users"] != 1 for r in turns),
        "log_turn_errors": sum(r["errors"] for r in turns),  # message.error: a failed turn
        "log_answer_stored_twice": sum(r["answers"] > 1 for r in turns),
        "log_seq_gaps": gaps,
        "client_sent": sum(s.sent for s in stats),
        "client_answered": sum(s.answered for s in stats),
        "client_missing_answers": sum(s.missing for s in stats),
        "client_failed_turns": sum(s.failed for s in stats),
        "client_duplicate_answers": sum(s.duplicate_answers for s in stats),
        "client_events_missed": await events_missed(conn, [v for c in clients for v in c.views]),
        "client_seq_duplicates": sum(s.seq_duplicates for s in stats),
        "client_garbled_answers": sum(s.garbled for s in stats),
        "client_reconnects": sum(s.reconnects for s in stats),
        "client_errors": dict(sum((s.errors for s in stats), Counter())),
        "examples": {
            "missing_end": missing_end[:5],
            "duplicate_end": duplicate_end[:5],
            "garbled": [e for s in stats for e in s.garbled_examples][:3],
        },
    }


RESUMED = """
SELECT h.run_id, h.kill_at, h.role,
       (SELECT r.finished_at <= h.kill_at FROM threadline.runs r WHERE r.id = h.run_id) AS done,
       least((SELECT min(s.created_at) FROM threadline.steps s
              WHERE s.run_id = h.run_id AND s.created_at > h.kill_at),
             (SELECT r.finished_at FROM threadline.runs r
              WHERE r.id = h.run_id AND r.finished_at > h.kill_at),
             (SELECT min(e.at) FROM threadline.session_events e
              WHERE e.session_id = h.session_id AND e.at > h.kill_at)) AS progress
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[])
    AS h(run_id, kill_at, session_id, role)
"""


async def resume_report(conn: asyncpg.Connection, kills: list[Kill]) -> dict[str, Any]:
    held = [
        (run, datetime.fromtimestamp(k.at, UTC), key if wf == TURN_WORKFLOW else None, k.role)
        for k in kills
        for run, wf, key in k.held or ()
    ]
    rows = (
        await conn.fetch(RESUMED, *(list(col) for col in zip(*held, strict=True))) if held else []
    )
    resumed = sorted(
        ((r["progress"] - r["kill_at"]).total_seconds(), r["run_id"], r["role"], r["kill_at"])
        for r in rows
        if not r["done"] and r["progress"] is not None
    )
    times = [t for t, *_ in resumed]
    slowest = [
        f"{run} ({role} killed at {at.isoformat(timespec='milliseconds')[11:23]}): {t:.2f} s"
        for t, run, role, at in resumed[-5:]
    ]
    never = [r["run_id"] for r in rows if not r["done"] and r["progress"] is None]
    return {
        "kills_holding_runs": sum(bool(k.held) for k in kills),
        "kills_unknown_holdings": sum(k.held is None for k in kills),
        "runs": len(times),
        "p50_s": round(statistics.median(times), 3) if times else None,
        "p99_s": round(_percentile(times, 0.99), 3) if times else None,
        "max_s": round(times[-1], 3) if times else None,
        "never_resumed": len(never),
        "examples": {"never_resumed": never[:5], "slowest": slowest},
    }


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the whole run ------------------------------------------------------------------------------


async def run(settings: Settings) -> dict[str, Any]:
    """Start everything, load it, hurt it, drain it, and say what happened."""
    rng = random.Random(settings.seed)
    load_before = os.getloadavg()
    cluster = Cluster(settings)
    await cluster.start_database()
    observer = Observer(cluster.url)
    engine = Engine(cluster.url, registry=chaos_app.registry, worker=False, version=VERSION)
    try:
        async with engine:
            async with engine.pool.acquire() as conn:
                await conn.execute(chaos_app.EXECUTIONS_SCHEMA)
            await set_budget(cluster)
            cluster.start_processes()
            await until_ready(cluster, engine)
            kills, restarts, clients, orders = await load_and_hurt(
                settings, cluster, engine, observer, rng
            )
        result = await report(settings, cluster, observer, kills, restarts, clients, orders)
    finally:
        await observer.close()
        await cluster.stop(settings.logs)
    result["conditions"]["load_before"] = [round(x, 2) for x in load_before]
    return result


async def set_budget(cluster: Cluster) -> None:
    """`threadline budgets set tenant:chaos 1000`: a limit, so every call reserves first."""
    command = [sys.executable, "-m", "threadline.cli", "budgets", "set"]
    proc = await asyncio.create_subprocess_exec(
        *command,
        f"tenant:{chaos_app.TENANT}",
        TENANT_BUDGET_USD,
        cwd=ROOT,
        env=cluster.env(),
        stdout=subprocess.DEVNULL,
    )
    if await proc.wait() != 0:
        raise RuntimeError("threadline budgets set failed")


async def load_and_hurt(
    settings: Settings, cluster: Cluster, engine: Engine, observer: Observer, rng: random.Random
) -> tuple[list[Kill], list[dict[str, Any]], list[ChatClient], Orders]:
    stop_load, stop_watch = asyncio.Event(), asyncio.Event()
    t0 = time.monotonic()
    deadline = t0 + settings.duration + settings.drain
    orders = Orders(engine, settings.rate, random.Random(rng.random()))
    clients = [
        ChatClient(k, cluster.http_url, settings.turns, random.Random(rng.random()))
        for k in range(settings.clients)
    ]
    background = [
        asyncio.create_task(observer.watch(stop_watch)),
        asyncio.create_task(cluster.supervise(stop_watch)),
    ]
    load = [asyncio.create_task(orders.run(stop_load))]
    load += [asyncio.create_task(c.run(stop_load, deadline)) for c in clients]
    plan = plan_faults(settings, rng)
    kills, restarts = await unleash(cluster, observer, plan, t0, rng)
    await asyncio.sleep(max(0.0, t0 + settings.duration - time.monotonic()))
    stop_load.set()
    await drain(engine, orders, load, deadline)
    await observer.sample()  # the stalls of whatever is left, up to now
    stop_watch.set()
    await asyncio.gather(*background)
    return kills, restarts, clients, orders


async def drain(
    engine: Engine, orders: Orders, load: list[asyncio.Task[None]], deadline: float
) -> None:
    """Until every started run has ended and every client has its answers (or the deadline)."""
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            async with engine.pool.acquire() as conn:
                left = await conn.fetchval(
                    "SELECT count(*) FROM threadline.runs WHERE workflow = $1"
                    " AND status IN ('pending', 'running')",
                    chaos_app.WORKFLOW,
                )
            if left == 0 and not orders.tasks and all(t.done() for t in load):
                break
        await asyncio.sleep(0.5)
    for task in [*load, *orders.tasks]:
        task.cancel()
    await asyncio.gather(*load, *orders.tasks, return_exceptions=True)


async def report(
    settings: Settings,
    cluster: Cluster,
    observer: Observer,
    kills: list[Kill],
    restarts: list[dict[str, Any]],
    clients: list[ChatClient],
    orders: Orders,
) -> dict[str, Any]:
    conn = await asyncpg.connect(cluster.url)
    try:
        result = {
            "runs": await runs_report(conn, chaos_app.WORKFLOW, observer, orders.acked),
            "turn_runs": await runs_report(conn, TURN_WORKFLOW, observer, None),
            "steps": await steps_report(conn, kills),
            "ledger": await ledger_report(conn, observer, kills, settings.tps),
            "chat": await chat_report(conn, clients),
            "resume": await resume_report(conn, kills),
        }
    finally:
        await conn.close()
    result["runs"]["start_errors"] = dict(orders.errors)
    result["faults"] = {
        "kills": dict(Counter(k.role for k in kills)),
        "kill_log": [
            {"at": round(k.at, 3), "role": k.role, "pid": k.pid, "held": k.held} for k in kills
        ],
        "pg_restarts": restarts,
        "self_exits": {c.role: c.exits for c in cluster.children.values() if c.exits},
        "process_starts": {c.role: c.starts for c in cluster.children.values()},
        "observer_failed_samples": observer.failed_samples,
    }
    result["conditions"] = {k: v for k, v in asdict(settings).items() if k != "logs"} | {
        "cpus": os.cpu_count(),
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return result


# -- output -------------------------------------------------------------------------------------


def table(result: dict[str, Any]) -> str:
    c, f = result["conditions"], result["faults"]
    runs, turns, steps = result["runs"], result["turn_runs"], result["steps"]
    ledger, chat, resume = result["ledger"], result["chat"], result["resume"]
    kills = ", ".join(f"{role} {n}" for role, n in sorted(f["kills"].items()))
    modes = Counter(r["mode"] for r in f["pg_restarts"])
    lines = [
        f"{c['duration']:.0f} s of load, {sum(f['kills'].values())} SIGKILLs ({kills}), "
        f"{len(f['pg_restarts'])} PostgreSQL restarts ({modes['fast']} fast, "
        f"{modes['immediate']} immediate); {c['rate']} runs/s, {c['clients']} chat clients, "
        f"seed {c['seed']}; load average {c['load_before'][0]} -> {c['load_after'][0]}",
        "",
        f"{'':<44}{'found':>12}  target",
    ]

    def row(label: str, value: Any, target: str = "") -> None:
        lines.append(f"{label:<44}{value!s:>12}  {target}")

    row("workflow runs started", runs["started"])
    row("  succeeded", runs["succeeded"])
    row("  lost", runs["lost"], "0")
    row("  failed", runs["failed"], "0")
    row("  stuck > 10 s (no progress)", runs["stuck"], "0")
    row("  unfinished at the end", runs["unfinished"], "0")
    row(
        "turn runs succeeded / failed / stuck",
        f"{turns['succeeded']}/{turns['failed']}/{turns['stuck']}",
        "-/0/0",
    )
    row("step bodies re-run after their record", steps["reruns_after_commit"], "0")
    row("  (re-run before it: at-least-once)", steps["reruns"] - steps["reruns_after_commit"])
    row("  re-run while another process ran it", steps["reruns_alongside"], "0")
    row("calls bought twice", ledger["bought_twice"], "0")
    recovered = f"{ledger['recovered_rows']}/{ledger['recovered_at_worst_case']}"
    row("rows settled by recovery / at worst case", recovered)
    row("  extra (holder never killed)", ledger["extra_recovered_rows"], "0")
    row("  unattributed", ledger["unattributed_recovered_rows"], "0")
    row("charged / actual $", f"{ledger['charged_usd']:.4f}/{ledger['actual_usd']:.4f}")
    row("chat turns sent / answered", f"{chat['client_sent']}/{chat['client_answered']}")
    row("  log: message.end missing", chat["log_missing_end"], "0")
    row("  log: message.end duplicated", chat["log_duplicate_end"], "0")
    row("  log: message.user not once", chat["log_user_event_not_once"], "0")
    row("  log: seq gaps", chat["log_seq_gaps"], "0")
    row("  log: turns failed (message.error)", chat["log_turn_errors"], "0")
    row("  clients: answers missing", chat["client_missing_answers"], "0")
    row("  clients: answers duplicated", chat["client_duplicate_answers"], "0")
    row(
        "  clients: events missed / repeated",
        f"{chat['client_events_missed']}/{chat['client_seq_duplicates']}",
        "0/0",
    )
    row("  clients: garbled answers", chat["client_garbled_answers"], "0")
    row("resume after a kill p50 / p99 s", f"{resume['p50_s']}/{resume['p99_s']}", "p99 <= 2")
    row("  runs held by killed processes", resume["runs"])
    row("  never resumed", resume["never_resumed"], "0")
    row("processes that exited by themselves", sum(len(v) for v in f["self_exits"].values()), "0")
    return "\n".join(lines)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    defaults = Settings()
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds of load")
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--pg-restarts", type=int, default=defaults.pg_restarts)
    parser.add_argument("--rate", type=float, default=defaults.rate, help="runs started a second")
    parser.add_argument("--clients", type=int, default=defaults.clients, help="chat clients")
    parser.add_argument("--turns", type=int, default=defaults.turns, help="messages a session")
    parser.add_argument("--tps", type=float, default=defaults.tps, help="demo model tokens/s")
    parser.add_argument("--drain", type=float, default=defaults.drain, help="seconds, at most")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--record", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--logs", type=Path, default=None, help="keep the processes' logs here")
    args = parser.parse_args()
    # This process's engine retries through each restart, loudly: not a result. The
    # processes under test log to their own files (--logs keeps them).
    for name in ("threadline", "asyncpg"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    settings = Settings(
        duration=args.duration,
        kills=args.kills,
        pg_restarts=args.pg_restarts,
        rate=args.rate,
        clients=args.clients,
        turns=args.turns,
        tps=args.tps,
        drain=args.drain,
        seed=args.seed,
        logs=args.logs,
    )
    result = run_loop(run(settings))
    if args.record is not None:
        args.record.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result) if args.json else table(result))


if __name__ == "__main__":
    cli()
