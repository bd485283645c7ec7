"""Chat across real processes: a server killed with SIGKILL mid-answer and started again, and
a web process whose turns run on a worker in another process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import psutil
import pytest
import websockets

from threadline import Engine
from threadline.ledger import Ledger

from ..chat_server import Screen
from ..helpers import ROOT, kill, until

pytestmark = pytest.mark.processes

ENV = {"THREADLINE_SECRET": "process-test-secret-of-32-bytes!!", "THREADLINE_APP_VERSION": "t1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(database_url: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONUNBUFFERED="1", **ENV)
    return subprocess.Popen(
        [sys.executable, "-m", "threadline.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def serve(database_url: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return spawn(
        database_url, "serve", "--port", str(port), "--agents", "tests.web.apps:AGENTS", *extra
    )


async def until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(30):
        while True:
            assert proc.poll() is None, kill(proc)
            try:
                async with httpx.AsyncClient() as http:
                    await http.get(url + "/widget.js")
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)


async def serving(
    database_url: str, procs: list[subprocess.Popen[bytes]], *extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    """A server on a free port, left to `procs` to stop, once it answers: (process, url)."""
    port = free_port()
    server = serve(database_url, port, *extra)
    procs.append(server)
    url = f"http://127.0.0.1:{port}"
    await until_up(url, server)
    return server, url


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            kill(proc)


async def new_session(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        r = await http.post(url + "/v1/sessions", json={"agent": "slow"})
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body


def ws_url(url: str, session: dict[str, Any]) -> str:
    sid, token = session["session_id"], session["token"]
    return f"{url.replace('http', 'ws')}/v1/sessions/{sid}/ws?token={token}"


async def read_until_end(ws: Any, frames: list[dict[str, Any]]) -> None:
    async with asyncio.timeout(40):
        while not frames or frames[-1]["type"] != "message.end":
            frames.append(json.loads(await ws.recv()))


def shown_answer(frames: list[dict[str, Any]]) -> str:
    """What the widget shows (checking that nothing is out of order, missing or twice)."""
    screen = Screen()
    for frame in frames:
        screen.show(frame)
    return screen.answers[frames[-1]["turn_id"]]


async def test_a_server_killed_mid_answer_finishes_the_turn_once_after_restart(
    database_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    first, url = await serving(database_url, procs)
    session = await new_session(url)
    frames: list[dict[str, Any]] = []
    screen = Screen()
    async with websockets.connect(ws_url(url, session)) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Tell me"}))
        while sum(f["type"] == "message.delta" for f in frames) < 3:
            frames.append(json.loads(await ws.recv()))
            screen.show(frames[-1])
        # Some of what the client shows may never have been logged: the answer restarts.
        first.send_signal(signal.SIGKILL)
        first.wait()
    _, url = await serving(database_url, procs)
    async with websockets.connect(ws_url(url, session)) as ws:
        await ws.recv()
        await ws.send(json.dumps(screen.resume()))
        await read_until_end(ws, frames)
    assert shown_answer(frames) == frames[-1]["text"]  # nothing twice, in order
    async with Engine(database_url, worker=False) as client:
        rows = await Ledger(client.pool).calls(session_id=session["session_id"])
        run = (await client.list_runs(workflow="threadline.turn"))[0]
        async with client.pool.acquire() as conn:
            stored = await conn.fetch(
                "SELECT role FROM threadline.session_messages WHERE session_id = $1 ORDER BY seq",
                session["session_id"],
            )
    assert [r["role"] for r in stored] == ["user", "assistant"]
    assert run.recoveries == 1 and run.status == "succeeded"
    assert [r["status"] for r in rows] == ["ok"]  # the killed attempt wrote no second charge


async def test_a_turn_runs_on_a_worker_in_another_process(
    database_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    worker = spawn(database_url, "worker", "--app", "tests.web.apps:engine")
    procs.append(worker)
    _, url = await serving(database_url, procs, "--no-worker")
    session = await new_session(url)
    frames: list[dict[str, Any]] = []
    async with websockets.connect(ws_url(url, session)) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
        await read_until_end(ws, frames)
    assert shown_answer(frames) == frames[-1]["text"]
    async with Engine(database_url, worker=False) as client:
        run = (await client.list_runs(workflow="threadline.turn"))[0]
        async with client.pool.acquire() as conn:
            pids = [r["pid"] for r in await conn.fetch("SELECT pid FROM threadline.workers")]
    assert run.status == "succeeded"
    assert pids == [worker.pid]  # the web process runs no worker: the other process ran it


async def test_sigterm_lets_the_answer_being_streamed_finish_then_exits(
    database_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    server, url = await serving(database_url, procs)
    session = await new_session(url)
    async with websockets.connect(ws_url(url, session)) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Tell me"}))
        while json.loads(await ws.recv())["type"] != "message.delta":
            pass
        server.send_signal(signal.SIGTERM)
    # Killed by its own signal (uvicorn raises it again after shutting down) it would exit
    # with -SIGTERM before the turn finished and before the embedded database stopped.
    assert await asyncio.to_thread(server.wait, 40) == 0
    async with Engine(database_url, worker=False) as client:
        run = (await client.list_runs(workflow="threadline.turn"))[0]
        async with client.pool.acquire() as conn:
            roles = await conn.fetch(
                "SELECT role FROM threadline.session_messages WHERE session_id = $1 ORDER BY seq",
                session["session_id"],
            )
    assert run.status == "succeeded" and run.recoveries == 0
    assert [r["role"] for r in roles] == ["user", "assistant"]


async def test_the_terminal_client_reconnects_when_the_server_restarts(
    database_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    """`threadline chat` against a server killed mid-answer and started again on its port:
    the client reconnects, the answer comes whole, and the next message is answered."""
    from threadline.web.terminal import chat as terminal_chat

    first, url = await serving(database_url, procs)
    printed: list[str] = []
    killed = asyncio.Event()

    async def lines() -> AsyncIterator[str]:
        yield "Tell me"
        yield "And then?"

    async def kill_mid_answer() -> None:
        await until(lambda: len("".join(printed)) >= 40, timeout=30)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed.set()
        again = serve(database_url, int(url.rsplit(":", 1)[1]))
        procs.append(again)
        await until_up(url, again)

    killer = asyncio.create_task(kill_mid_answer())
    async with asyncio.timeout(90):
        await terminal_chat(url, "slow", lines(), printed.append)
    await killer
    assert killed.is_set()
    out = "".join(printed)
    assert "[connection lost; reconnecting]" in out
    assert out.count("[demo:threadline-demo $") == 2, out  # both answers ended
    async with Engine(database_url, worker=False) as client, client.pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT role, content FROM threadline.session_messages ORDER BY seq"
        )
    first_answer = stored[1]["content"]
    tail = out.split("[the answer starts again]\n")[-1] if "starts again" in out else out
    assert first_answer in tail.replace("\n[connection lost; reconnecting]\n", ""), out
    assert [r["role"] for r in stored] == ["user", "assistant", "user", "assistant"]


@pytest.mark.browser
async def test_the_widget_finishes_an_answer_whose_worker_was_killed(
    database_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A worker killed with SIGKILL mid-answer: another worker takes the turn over and the
    widget (on the web process, which lives on) shows the answer once, whole, then Send."""
    from playwright.async_api import async_playwright

    from threadline.testing.browser import CHROMIUM_ARGS

    first = spawn(database_url, "worker", "--app", "tests.web.apps:engine")
    procs.append(first)
    _, url = await serving(database_url, procs, "--no-worker")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(f"{url}/?agent=slow")
        await page.click(".bubble")
        await page.fill("textarea", "Tell me about your plans")
        await page.press("textarea", "Enter")
        await page.wait_for_function(  # it is being answered
            "() => (window.threadlineWidget?.slow?.root.querySelector('.msg.assistant')"
            "?.textContent.length || 0) >= 20",
            timeout=20_000,
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
        procs.append(spawn(database_url, "worker", "--app", "tests.web.apps:engine"))
        await page.wait_for_selector("form button.send", timeout=40_000)
        texts = await page.eval_on_selector_all(
            ".msg.assistant", "els => els.map(e => e.textContent)"
        )
        await browser.close()
    async with Engine(database_url, worker=False) as client:
        run = (await client.list_runs(workflow="threadline.turn"))[0]
        async with client.pool.acquire() as conn:
            stored = await conn.fetchval(
                "SELECT content FROM threadline.session_messages WHERE role = 'assistant'"
            )
    assert run.status == "succeeded" and run.recoveries == 1
    assert len(texts) == 1  # once
    assert texts[0].split() == stored.replace("\n", " ").split()  # whole


def listening_children(parent: subprocess.Popen[bytes], port: int) -> set[int]:
    """The pids of `parent`'s children that listen on `port`."""
    found = set()
    for child in psutil.Process(parent.pid).children():
        with contextlib.suppress(psutil.Error):
            if any(
                c.status == psutil.CONN_LISTEN and c.laddr.port == port
                for c in child.net_connections("tcp")
            ):
                found.add(child.pid)
    return found


async def test_serve_processes_share_a_port_and_a_dead_one_is_replaced(
    database_url: str, procs: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    parent = serve(database_url, port, "--processes", "2")
    procs.append(parent)
    url = f"http://127.0.0.1:{port}"
    await until_up(url, parent)
    await until(lambda: len(listening_children(parent, port)) == 2, timeout=30)
    first = listening_children(parent, port)

    # Connections are spread over both processes, and each answers the conversation.
    sessions = [await new_session(url) for _ in range(12)]
    sockets = [await websockets.connect(ws_url(url, s)) for s in sessions]
    try:
        served = {
            child.pid: sum(c.status == psutil.CONN_ESTABLISHED for c in child.net_connections())
            for child in psutil.Process(parent.pid).children()
        }
        assert sum(1 for n in served.values() if n) == 2, served
        frames: list[dict[str, Any]] = []
        ws = sockets[0]
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hi"}))
        await read_until_end(ws, frames)
        assert frames[-1]["text"]
    finally:
        for ws in sockets:
            await ws.close()

    # A child killed: the port goes on answering, and the supervisor starts another.
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    async with httpx.AsyncClient() as http:
        for _ in range(10):
            assert (await http.get(url + "/widget.js")).status_code == 200
    await until(lambda: len(listening_children(parent, port) - {victim}) == 2, timeout=30)
    assert listening_children(parent, port) & first == first - {victim}

    # SIGTERM: the children drain and exit, then the supervisor, with 0.
    children = [p.pid for p in psutil.Process(parent.pid).children()]
    parent.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(parent.wait, 60) == 0
    assert not [pid for pid in children if psutil.pid_exists(pid)]


async def test_a_stopping_server_turns_unready_then_sends_its_sockets_elsewhere(
    database_url: str, procs: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM: `/readyz` answers 503 while the server serves on for the drain delay (a
    balancer's checks move new work elsewhere), then its WebSockets close with 1012 (the
    widget reconnects) and it exits."""
    monkeypatch.setenv("THREADLINE_DRAIN_DELAY", "2")
    server, url = await serving(database_url, procs)
    async with httpx.AsyncClient() as http:
        assert (await http.get(url + "/readyz")).status_code == 200
        session = await new_session(url)
        async with websockets.connect(ws_url(url, session)) as ws:
            await ws.recv()
            server.send_signal(signal.SIGTERM)
            r = await http.get(url + "/readyz")
            for _ in range(50):
                if r.status_code == 503:
                    break
                await asyncio.sleep(0.05)
                r = await http.get(url + "/readyz")
            assert r.status_code == 503 and r.json()["checks"]["draining"] != "ok"
            assert (await http.get(url + "/healthz")).status_code == 200  # still serving
            with pytest.raises(websockets.ConnectionClosed) as closed:
                async with asyncio.timeout(20):
                    while True:
                        await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert await asyncio.to_thread(server.wait, 40) == 0
