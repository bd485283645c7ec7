"""A real server for chat tests: the FastAPI app under uvicorn in the test's event loop, on
an ephemeral port, with an engine and worker on the test's database (the `chat` fixture of
tests/conftest.py, and `chat_server` for other agents), the test agents it serves, and how a
client reads its frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import websockets

from threadline import Engine
from threadline.agents import Agent, Turn
from threadline.ledger import Budget
from threadline.router import Models
from threadline.sessions import Sessions
from threadline.testing.server import serving
from threadline.web import Auth, Hub, create_app
from threadline.web.limits import Limits

echo = Agent(name="echo", model="demo:threadline-demo", prompt="You are a test bot.")


@echo.state("start")
async def _answer(turn: Turn) -> str | None:
    await turn.reply()
    return None


nudge = Agent(name="nudge", model="demo:threadline-demo")


@nudge.state("start")
async def _nudge(turn: Turn) -> str | None:
    await turn.reply()
    turn.remind_after(1.0, "Still there?")
    return None


thrifty = Agent(name="thrifty", model="demo:threadline-demo", budget=Budget(usd=0.002))


@thrifty.state("start")
async def _thrifty(turn: Turn) -> str | None:
    await turn.reply()
    return None


ORIGIN = "https://shop.example"
SECRET = "test-secret-of-at-least-32-bytes!!"
ADMIN = {"authorization": "Bearer admin-key"}  # the admin key `chat_server` sets


@dataclass
class ChatServer:
    url: str
    sessions: Sessions
    auth: Auth
    http: httpx.AsyncClient
    hub: Hub

    async def new_session(self, agent: str = "echo") -> dict[str, Any]:
        r = await self.http.post("/v1/sessions", json={"agent": agent})
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body

    def ws_url(self, session: dict[str, Any], token: str | None = None) -> str:
        base = self.url.replace("http", "ws")
        return f"{base}/v1/sessions/{session['session_id']}/ws?token={token or session['token']}"

    def connect(self, session: dict[str, Any], **kwargs: Any) -> Any:
        return websockets.connect(self.ws_url(session), **kwargs)


@contextlib.asynccontextmanager
async def chat_server(
    database_url: str, agents: list[Agent], limits: Limits | None = None
) -> AsyncIterator[ChatServer]:
    engine = Engine(database_url, poll_interval=0.05)
    models = Models(model_options={"demo": {"tokens_per_second": 100}})
    sessions = Sessions(engine, agents, models=models, max_message_chars=2000)
    async with engine:
        hub = Hub(engine.url)
        await hub.start()
        auth = Auth(
            secret="test-secret-of-at-least-32-bytes!!",
            admin_key="admin-key",
            allowed_origins=(ORIGIN,),
        )
        app = create_app(sessions, hub, auth, limits=limits)
        async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
            yield ChatServer(url, sessions, auth, http, hub)
        await hub.stop()
        await models.aclose()


async def frames_until(ws: Any, kind: str, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Every frame up to and including the first of type `kind`."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            seen.append(frame)
            if frame["type"] == kind:
                return seen


class Screen:
    """What a client shows, built from the frames it gets as the widget builds it, and
    strict: a logged frame out of order, or an answer's piece that leaves a gap or repeats
    text, fails the test."""

    def __init__(self) -> None:
        self.last_seq = 0
        self.answers: dict[str, str] = {}  # turn -> its text since its last (re)start
        self.started: dict[str, float | None] = {}
        self.current: str | None = None  # the answer in progress
        self.live = 0  # pieces that came before they were logged (no seq)

    def show(self, frame: dict[str, Any]) -> None:
        if "seq" in frame:  # every number once, in order (a `logged` frame covers a run)
            first = frame.get("first", frame["seq"]) if frame["type"] == "logged" else frame["seq"]
            assert first <= frame["seq"], frame
            assert first == self.last_seq + 1 or not self.last_seq, (
                f"{frame} after seq {self.last_seq}"
            )
            self.last_seq = frame["seq"]
        kind, turn = frame["type"], frame.get("turn_id")
        if kind in ("message.start", "message.restart"):
            assert turn not in self.started or frame.get("ts") != self.started[turn], (
                f"the same beginning twice: {frame}"
            )
            kept = self.answers.get(turn, "")[: frame.get("keep", 0)]  # the rounds before
            assert len(kept) == frame.get("keep", 0), f"{frame} keeps more than shown"
            self.answers[turn], self.started[turn], self.current = kept, frame.get("ts"), turn
        elif kind == "message.delta":
            text = self.answers.get(turn, "")
            assert frame["offset"] == len(text), f"{frame} after {len(text)} code points"
            self.answers[turn] = text + frame["text"]
            self.live += "seq" not in frame
        elif kind == "message.end" and turn == self.current:
            self.current = None

    def resume(self) -> dict[str, Any]:
        """The `resume` frame after a reconnect: the last number seen, and how much of the
        answer in progress is on screen."""
        frame: dict[str, Any] = {"type": "resume", "after_seq": self.last_seq}
        if self.current is not None:
            frame["turn_id"] = self.current
            frame["started"] = self.started[self.current]
            frame["shown"] = len(self.answers[self.current])
        return frame
