"""The multi-node deployment of deploy/ (docs/deploy.md), started from its very files: PgBouncer
in transaction mode in front of PostgreSQL, two web nodes and two workers (the systemd units'
commands with deploy/env's settings) behind nginx in round-robin with no stickiness, and
behind HAProxy, whose health checks ask /readyz. Web nodes and workers are killed with SIGKILL
mid-answer: the widget, in Chromium on a page of another origin, reconnects through the proxy
to the other node and shows the answer once, whole; another worker finishes the turn; the
ledger holds one charge per model call.

PostgreSQL is the tests' embedded server, with a fresh database: a server process of its own,
as an external one is. PgBouncer reaches it on its Unix socket (as Debian's PgBouncer reaches
Debian's PostgreSQL), the processes' THREADLINE_DIRECT_DATABASE_URL too."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
import websockets

from threadline.web.processes import DRAIN_S

from ..chat_server import Screen
from ..web.test_processes import free_port, new_session, read_until_end, shown_answer, ws_url
from .conftest import (
    ADMIN_KEY,
    SECRET,
    START_TIMEOUT_S,
    Fleet,
    Proc,
    env_file,
    program,
    render,
    unit_command,
    unit_settings,
    wait_for,
)

PUBLIC_NAME = "chat.localhost"  # Chromium sends *.localhost to loopback by itself
BOUNCER_PASSWORD = "deploy-test-password"
TURNS = "SELECT id, status, recoveries FROM threadline.runs WHERE workflow = 'threadline.turn'"

# -- the deployment --------------------------------------------------------------------------


@dataclass
class Node:
    """A web node (`threadline serve --no-worker`)."""

    proc: Proc
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def ready(self) -> bool:
        async with httpx.AsyncClient() as http:
            return (await http.get(self.url + "/readyz")).status_code == 200

    async def streams(self) -> int:
        """The WebSockets and event streams open on sessions here: its /metrics gauge."""
        async with httpx.AsyncClient() as http:
            r = await http.get(
                self.url + "/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"}
            )
        r.raise_for_status()
        found = re.search(r"^threadline_streams (\S+)$", r.text, re.MULTILINE)
        assert found, f"no threadline_streams gauge in {self.url}/metrics"
        return int(float(found[1]))


def node_env(database_url: str, direct_url: str, public_url: str, origins: str) -> dict[str, str]:
    """deploy/env filled in, as /etc/threadline/env on every node."""
    env = env_file(
        DATABASE_URL=database_url,
        DIRECT_DATABASE_URL=direct_url,
        SECRET=SECRET,
        ADMIN_KEY=ADMIN_KEY,
        PUBLIC_URL=public_url,
        ALLOWED_ORIGINS=origins,
        PROXY_IPS="127.0.0.1",
    )
    # Every process runs the same code: the version turns are pinned to, fixed for the test.
    return {**env, "PYTHONUNBUFFERED": "1", "THREADLINE_APP_VERSION": "deploy-test"}


def start_web(fleet: Fleet, env: dict[str, str], n: int) -> Node:
    port = free_port()
    argv = unit_command(
        "threadline-web@.service", str(port), HOST="127.0.0.1", AGENTS="tests.web.apps:AGENTS"
    )
    return Node(fleet.start(f"web{n}", argv, env), port)


def start_worker(fleet: Fleet, env: dict[str, str], n: int) -> Proc:
    argv = unit_command("threadline-worker@.service", str(n), APP="tests.web.apps:engine")
    return fleet.start(f"worker{n}", argv, env)


def start_pgbouncer(fleet: Fleet, database_url: str, folder: Path) -> str:
    """PgBouncer from deploy/pgbouncer.ini in front of `database_url`'s server; the URL of
    its `threadline` database."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    socket_dir = query["host"][0]
    port = free_port()
    users = folder / "userlist.txt"
    users.write_text(f'"postgres" "{BOUNCER_PASSWORD}"\n')
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        render(
            "pgbouncer.ini",
            PG_HOST=socket_dir,
            PG_PORT=query.get("port", ["5432"])[0],
            PG_DB=parts.path.lstrip("/"),
            LISTEN_ADDR="127.0.0.1",
            LISTEN_PORT=str(port),
            AUTH_FILE=str(users),
        )
    )
    # PgBouncer refuses to run as root: it runs as the owner of PostgreSQL's socket
    # directory (as Debian's runs as `postgres`), switching after it read its files.
    run_as = ["-u", Path(socket_dir).owner()] if os.geteuid() == 0 else []
    fleet.start("pgbouncer", [program("pgbouncer"), *run_as, str(ini)])
    return f"postgresql://postgres:{BOUNCER_PASSWORD}@127.0.0.1:{port}/threadline"


def start_nginx(fleet: Fleet, folder: Path, port: int, nodes: list[Node]) -> Path:
    """nginx with deploy/nginx.conf (an http-level file) in a main file of the test's; the
    access log's path."""
    site = folder / "nginx-threadline.conf"
    site.write_text(
        render(
            "nginx.conf",
            LISTEN=f"127.0.0.1:{port}",
            SERVER_NAME=PUBLIC_NAME,
            WEB1=nodes[0].address,
            WEB2=nodes[1].address,
            LOG_DIR=str(folder),
        )
    )
    temp = "\n".join(
        f"    {kind}_temp_path {folder}/nginx-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = folder / "nginx-main.conf"
    main.write_text(
        "daemon off;\n"
        # As root, workers run as root: the test's folder is its own (mode 700).
        + ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {folder}/nginx.pid;\n"
        + "events {\n    worker_connections 1024;\n}\n"
        + f"http {{\n{temp}\n    include {site};\n}}\n"
    )
    argv = [program("nginx"), "-p", str(folder), "-e", f"{folder}/nginx-error.log", "-c", str(main)]
    fleet.start("nginx", argv)
    return folder / "threadline-access.log"


async def bouncer_answers(url: str) -> bool:
    conn = await asyncpg.connect(url, statement_cache_size=0, timeout=5)
    try:
        return bool(await conn.fetchval("SELECT 1") == 1)
    finally:
        await conn.close()


async def start_nodes_and_workers(
    fleet: Fleet, db: asyncpg.Connection, env: dict[str, str], workers: int
) -> tuple[list[Node], list[Proc]]:
    """Two web nodes and `workers` workers, once the nodes are ready and the workers have
    registered."""
    started = [start_worker(fleet, env, n) for n in range(1, workers + 1)]
    nodes = [start_web(fleet, env, n) for n in (1, 2)]

    async def registered() -> bool:
        rows = await db.fetch("SELECT pid FROM threadline.workers WHERE stopped_at IS NULL")
        return {w.pid for w in started} <= {r["pid"] for r in rows}

    for node in nodes:
        await wait_for(fleet, node.ready, f"{node.proc.name}'s /readyz", START_TIMEOUT_S)
    await wait_for(fleet, registered, "the workers to register", START_TIMEOUT_S)
    return nodes, started


async def the_node_with_the_socket(fleet: Fleet, nodes: list[Node]) -> Node:
    """The one node holding the session's WebSocket (the others hold no stream)."""
    found: list[Node] = []

    async def one() -> bool:
        counts = [await node.streams() for node in nodes]
        found[:] = [node for node, count in zip(nodes, counts, strict=True) if count]
        return sorted(counts) == [0, 1]

    await wait_for(fleet, one, "one node to hold the WebSocket")
    return found[0]


async def since(start: float, waiting: Awaitable[Any]) -> float:
    await waiting
    return time.monotonic() - start


# -- the widget behind nginx -----------------------------------------------------------------


@dataclass
class Through:
    """The server as the widget's page knows it: the load balancer's URL."""

    url: str


STREAMING = """([agent, n, chars]) => {
  const handle = (window.threadlineWidget || {})[agent];
  const answers = handle ? handle.root.querySelectorAll('.answer .msg.assistant') : [];
  return answers.length >= n && answers[n - 1].textContent.length >= chars;
}"""


LONG_QUESTION = (
    "Tell me about your plans for the garden this spring: which vegetables and flowers, how"
    " much water they need, and when the first harvest will be ready to pick"
)


async def ended_at(db: asyncpg.Connection, n: int) -> float:
    """When the session's `n`th answer ended (its message.end was logged), in Unix time."""
    at = await db.fetchval(
        "SELECT extract(epoch FROM at) FROM threadline.session_events"
        " WHERE type = 'message.end' ORDER BY seq OFFSET $1 LIMIT 1",
        n - 1,
    )
    assert at is not None, f"answer {n} has not ended"
    return float(at)


def words(text: str) -> list[str]:
    """Text as the widget shows it (Markdown rendered) and as it is stored, comparable."""
    return text.replace("\n", " ").split()


@pytest.mark.slow
@pytest.mark.processes
@pytest.mark.browser
async def test_the_widget_behind_nginx_outlives_a_killed_web_node_and_a_killed_worker(
    fleet: Fleet,
    database_url: str,
    tmp_path: Path,
    threadline_site: Any,
    threadline_page: Any,
) -> None:
    bouncer = start_pgbouncer(fleet, database_url, tmp_path)
    await wait_for(fleet, lambda: bouncer_answers(bouncer), "PgBouncer", timeout=30)
    port = free_port()
    public = f"http://{PUBLIC_NAME}:{port}"
    env = node_env(bouncer, database_url, public, threadline_site.origin)
    db = await asyncpg.connect(database_url)
    try:
        nodes, workers = await start_nodes_and_workers(fleet, db, env, workers=2)
        access_log = start_nginx(fleet, tmp_path, port, nodes)

        async def through_nginx() -> bool:
            async with httpx.AsyncClient() as http:
                r = await http.get(
                    f"http://127.0.0.1:{port}/readyz", headers={"host": f"{PUBLIC_NAME}:{port}"}
                )
            return r.status_code == 200

        await wait_for(fleet, through_nginx, "nginx", timeout=30)
        async with threadline_page(Through(public), "slow") as widget:
            # A web node killed while the answer streams through it (a long question: the
            # demo model's answer quotes it, and takes about 2 s).
            await widget.send(LONG_QUESTION)
            await widget.page.wait_for_function(STREAMING, arg=["slow", 1, 20], timeout=30_000)
            killed = await the_node_with_the_socket(fleet, nodes)
            other = next(node for node in nodes if node is not killed)

            async def reconnected() -> bool:
                return await other.streams() == 1

            killed.proc.kill()
            at, killed_at = time.monotonic(), time.time()
            ended = asyncio.create_task(since(at, widget.wait_for_answer(timeout=60)))
            await wait_for(fleet, reconnected, "the widget on the other node")
            reconnect_s = time.monotonic() - at
            answer_s = await ended
            stored = await db.fetch(
                "SELECT content FROM threadline.session_messages"
                " WHERE role = 'assistant' ORDER BY seq"
            )
            shown = await widget.element.locator(".answer .msg.assistant").all_inner_texts()
            assert len(shown) == 1, shown  # once
            assert words(shown[0]) == words(stored[0]["content"])  # whole
            assert await widget.error_text() is None
            assert await ended_at(db, 1) > killed_at  # it was killed mid-answer

            # A worker killed while it runs the next turn.
            await widget.send("And what comes after that?")
            await widget.page.wait_for_function(STREAMING, arg=["slow", 2, 20], timeout=30_000)
            turn = await db.fetchrow(
                "SELECT r.id, w.pid FROM threadline.runs r JOIN threadline.workers w"
                " ON w.id = r.owner WHERE r.workflow = 'threadline.turn' AND r.status = 'running'"
            )
            assert turn is not None
            worker = next(w for w in workers if w.pid == turn["pid"])
            survivor = next(w for w in workers if w is not worker)
            survivor_id = await db.fetchval(
                "SELECT id FROM threadline.workers WHERE pid = $1 AND stopped_at IS NULL",
                survivor.pid,
            )

            async def taken_over() -> bool:
                run = await db.fetchrow(
                    "SELECT owner, recoveries FROM threadline.runs WHERE id = $1", turn["id"]
                )
                return run is not None and run["owner"] == survivor_id and run["recoveries"] == 1

            async def turn_ended() -> bool:
                ends = await db.fetchval(
                    "SELECT count(*) FROM threadline.session_events WHERE type = 'message.end'"
                )
                return bool(ends == 2)

            worker.kill()
            at, killed_at = time.monotonic(), time.time()
            takeover_s = await since(at, wait_for(fleet, taken_over, "another worker"))
            end_s = await since(at, wait_for(fleet, turn_ended, "the turn's message.end"))
            await widget.wait_for_answer(timeout=60)
            shown = await widget.element.locator(".answer .msg.assistant").all_inner_texts()
            assert await widget.error_text() is None
            assert await ended_at(db, 2) > killed_at  # it was killed mid-answer
        stored = await db.fetch(
            "SELECT content FROM threadline.session_messages WHERE role = 'assistant' ORDER BY seq"
        )
        assert len(shown) == 2, shown
        assert [words(text) for text in shown] == [words(r["content"]) for r in stored]
        turns = await db.fetch(TURNS + " ORDER BY created_at")
        assert [(r["status"], r["recoveries"]) for r in turns] == [
            ("succeeded", 0),  # the web node's death left the turn be
            ("succeeded", 1),  # taken over once
        ]

        # One charge per model call: each turn made one, the killed attempt none.
        async def charged() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM threadline.llm_calls") >= 2)

        await wait_for(fleet, charged, "the ledger's rows")
        calls = await db.fetch("SELECT run_id, step_no, status FROM threadline.llm_calls")
        assert sorted(c["run_id"] for c in calls) == sorted(r["id"] for r in turns), calls
        assert [c["status"] for c in calls] == ["ok", "ok"]
    finally:
        await db.close()

    # nginx logs a WebSocket when it ends: the first went to the killed node, the widget's
    # last (ended with the browser) to the other, through the upstream's round-robin.
    def sockets() -> list[str]:
        lines = access_log.read_text().splitlines() if access_log.exists() else []
        return [line for line in lines if re.search(r'"GET /v1/sessions/[^/ ]+/ws"', line)]

    async def both_logged() -> bool:
        return any(other.address in line for line in sockets()[1:])

    await wait_for(fleet, both_logged, "nginx's log of the WebSockets", timeout=15)
    first, last = sockets()[0], sockets()[-1]
    assert f"upstream={killed.address} " in first, first
    assert re.search(rf"upstream=(\S+, )?{re.escape(other.address)} ", last), last
    print(
        f"\nweb node SIGKILL -> widget reconnected to the other node {reconnect_s:.2f} s,"
        f" answer complete {answer_s:.2f} s\nworker SIGKILL -> turn taken over"
        f" {takeover_s:.2f} s, message.end {end_s:.2f} s"
    )


# -- HAProxy ---------------------------------------------------------------------------------


async def haproxy_servers(socket: Path) -> dict[str, tuple[str, str]]:
    """Each web node's (status, last check) as HAProxy's stats socket shows them."""
    reader, writer = await asyncio.open_unix_connection(str(socket))
    try:
        writer.write(b"show stat\n")
        await writer.drain()
        text = (await reader.read()).decode()
    finally:
        writer.close()
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
    return {
        row["svname"]: (row["status"], row["check_status"])
        for row in rows
        if row["pxname"] == "threadline_web" and row["svname"] not in ("BACKEND", "FRONTEND")
    }


@pytest.mark.slow
@pytest.mark.processes
async def test_behind_haproxy_a_client_keeps_its_conversation_and_the_dead_node_goes_down(
    fleet: Fleet, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = node_env(database_url, "", url, "")
    db = await asyncpg.connect(database_url)
    try:
        nodes, _ = await start_nodes_and_workers(fleet, db, env, workers=1)
    finally:
        await db.close()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        render(
            "haproxy.cfg",
            LISTEN=f"127.0.0.1:{port}",
            WEB1=nodes[0].address,
            WEB2=nodes[1].address,
            RUN_DIR=str(tmp_path),
        )
    )
    fleet.start("haproxy", [program("haproxy"), "-db", "-f", str(config)])
    stats = tmp_path / "haproxy.sock"

    async def both_up() -> bool:  # L7OK: /readyz answered 200
        return set((await haproxy_servers(stats)).values()) == {("UP", "L7OK")}

    await wait_for(fleet, both_up, "HAProxy to check both nodes up", timeout=30)
    session = await new_session(url)
    frames: list[dict[str, Any]] = []
    screen = Screen()
    async with websockets.connect(ws_url(url, session)) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await ws.send(
            json.dumps({"type": "message.send", "client_id": "m1", "text": LONG_QUESTION})
        )
        while sum(f["type"] == "message.delta" for f in frames) < 3:
            frames.append(json.loads(await ws.recv()))
            screen.show(frames[-1])
        killed = await the_node_with_the_socket(fleet, nodes)
        other = next(node for node in nodes if node is not killed)
        names = {node.address: f"web{n}" for n, node in enumerate(nodes, 1)}

        async def marked_down() -> bool:
            servers = await haproxy_servers(stats)
            dead, alive = servers[names[killed.address]], servers[names[other.address]]
            return dead[0] == "DOWN" and alive == ("UP", "L7OK")

        killed.proc.kill()
        at = time.monotonic()
        down = asyncio.create_task(
            since(at, wait_for(fleet, marked_down, "HAProxy to mark the killed node down"))
        )
    # The client reconnects as the widget does (250 ms, doubling); HAProxy sends it to the
    # node that lives, retrying there if it picked the dead one first.
    attempts = 0
    while True:
        attempts += 1
        try:
            ws = await websockets.connect(ws_url(url, session))
            break
        except (OSError, websockets.InvalidHandshake):
            assert attempts < 6, "could not reconnect through HAProxy"
            await asyncio.sleep(0.25 * 2 ** (attempts - 1))
    reconnect_s = time.monotonic() - at
    async with ws:
        await ws.recv()
        await ws.send(json.dumps(screen.resume()))
        await read_until_end(ws, frames)
        assert shown_answer(frames) == frames[-1]["text"]  # nothing twice, in order
        # The conversation goes on there.
        await ws.send(json.dumps({"type": "message.send", "client_id": "m2", "text": "More?"}))
        more: list[dict[str, Any]] = []
        await read_until_end(ws, more)
        assert more[-1]["text"]
    down_s = await down  # by its checks of /readyz (L4CON: the port refuses them)
    print(
        f"\nHAProxy: web node SIGKILL -> reconnected in {attempts} attempt(s),"
        f" {reconnect_s:.2f} s; the node marked down {down_s:.2f} s after the kill"
    )


# -- the units -------------------------------------------------------------------------------


def test_the_units_read_the_env_file_and_outlast_the_drain() -> None:
    common = {"THREADLINE": "threadline", "APP_DIR": "/srv/app"}
    web = unit_settings("threadline-web@.service", HOST="10.0.0.11", AGENTS="a:A", **common)
    worker = unit_settings("threadline-worker@.service", APP="a:engine", **common)
    env = node_env("postgresql://pgbouncer/db", "postgresql://postgres/db", "https://x", "")
    for unit in (web, worker):
        assert unit["EnvironmentFile"] == "/etc/threadline/env"
        assert unit["Restart"] == "on-failure"
        assert unit["KillSignal"] == "SIGTERM"
    # A web node serves on, unready, for the drain delay, then gives open requests 10 s and
    # (with its worker, or under --processes N) its turns 30 s.
    assert int(web["TimeoutStopSec"]) > float(env["THREADLINE_DRAIN_DELAY"]) + DRAIN_S
    assert int(worker["TimeoutStopSec"]) > 30  # the worker's turns
