"""`ChatClient`: a session's WebSocket protocol (docs/protocol.md) as a test talks it.

    async with ChatClient.connect(ws_url, session) as chat:
        answer = await chat.send("Where is my order?")
        assert answer.text.startswith("It shipped") and answer.cost == Decimal("0.00012")

`send` returns when the turn ends (`message.end`, `message.error` or `message.cancelled`),
or when it waits for a tool's approval (`answer.waiting`): then `approve()` or `decline()`
and the same answer goes on to its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import websockets

__all__ = ["Answer", "ChatClient", "ToolUseSeen"]

ENDS = frozenset({"message.end", "message.error", "message.cancelled"})


@dataclass
class ToolUseSeen:
    """A tool call of the turn, with its result once it ran."""

    call_id: str
    name: str
    arguments: dict[str, Any]
    result: Any = None


@dataclass
class Answer:
    """One turn as the client saw it. `events` are all its frames, in order."""

    text: str = ""
    turn_id: str | None = None
    model: str | None = None
    cost: Decimal | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    cached: bool = False
    state: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    budget: dict[str, Any] | None = None
    tool_calls: list[ToolUseSeen] = field(default_factory=list)
    error: dict[str, Any] | None = None
    cancelled: bool = False
    waiting: dict[str, Any] | None = None  # the `tool.confirm` frame waiting for a yes or no
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled and self.waiting is None

    @property
    def streamed(self) -> str:
        """The text its pieces built since its last (re)start, placed by their offsets as a
        client places them: what was shown, also of a turn that failed mid-answer."""
        text = ""
        for frame in self.events:
            kind = frame.get("type")
            if kind in ("message.start", "message.restart"):
                text = text[: frame.get("keep") or 0]
            elif kind == "message.delta":
                offset = int(frame.get("offset", len(text)))
                text = text[: min(offset, len(text))] + str(frame["text"])
        return text

    def frames(self, kind: str) -> list[dict[str, Any]]:
        """This turn's frames of one type."""
        return [e for e in self.events if e.get("type") == kind]

    def see(self, frame: dict[str, Any]) -> None:
        self.events.append(frame)
        kind = frame.get("type")
        self.turn_id = self.turn_id or frame.get("turn_id")
        if kind == "tool.call":
            self.tool_calls.append(
                ToolUseSeen(frame["call_id"], frame["name"], dict(frame.get("arguments") or {}))
            )
        elif kind == "tool.result":
            for call in self.tool_calls:
                if call.call_id == frame["call_id"]:
                    call.result = frame.get("result")
        elif kind == "tool.confirm":
            self.waiting = frame
        elif kind == "message.end":
            self._end(frame)
        elif kind == "message.error":
            self.error = {k: frame.get(k) for k in ("code", "message", "retryable")}
        elif kind == "message.cancelled":
            self.cancelled = True

    def _end(self, frame: dict[str, Any]) -> None:
        self.text = frame.get("text") or ""
        self.model = frame.get("model")
        cost = frame.get("cost")
        self.cost = None if cost is None else Decimal(str(cost))
        self.usage = dict(frame.get("usage") or {})
        self.cached = bool(frame.get("cached"))
        self.state = frame.get("state")
        self.sources = list(frame.get("sources") or [])
        self.budget = frame.get("budget")


class ChatClient:
    """A WebSocket on one session; see the module docstring."""

    def __init__(self, ws: Any, session: dict[str, Any]) -> None:
        self.ws = ws
        self.session = session
        self.frames: list[dict[str, Any]] = []  # every frame received

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, ws_url: str, session: dict[str, Any]) -> AsyncIterator[ChatClient]:
        """Connect to the session (`ws_url` carries its token) and ask for all its events."""
        async with websockets.connect(ws_url) as ws:
            client = cls(ws, session)
            await client.post({"type": "resume", "after_seq": 0})
            yield client

    @property
    def session_id(self) -> str:
        return str(self.session["session_id"])

    async def post(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def receive(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next frame."""
        async with asyncio.timeout(timeout):
            frame: dict[str, Any] = json.loads(await self.ws.recv())
        self.frames.append(frame)
        return frame

    async def send(self, text: str, *, timeout: float = 30.0) -> Answer:
        """Send a message; its answer once the turn ends or waits for an approval."""
        client_id = uuid.uuid4().hex
        await self.post({"type": "message.send", "client_id": client_id, "text": text})
        async with asyncio.timeout(timeout):
            while True:  # frames of earlier turns and the greeting come first
                frame = await self.receive(timeout)
                if frame.get("type") == "message.user" and frame.get("client_id") == client_id:
                    break
                if frame.get("type") == "error":
                    raise RuntimeError(f"the server refused the message: {frame}")
        return await self._follow(Answer(), timeout)

    async def approve(self, answer: Answer, *, timeout: float = 30.0) -> Answer:
        """Approve the tool call `answer` waits for; the answer, once the turn goes on."""
        return await self._confirm(answer, True, timeout)

    async def decline(self, answer: Answer, *, timeout: float = 30.0) -> Answer:
        return await self._confirm(answer, False, timeout)

    async def cancel(self) -> None:
        await self.post({"type": "cancel"})

    async def _confirm(self, answer: Answer, approve: bool, timeout: float) -> Answer:
        if answer.waiting is None:
            raise RuntimeError("this answer waits for no approval")
        call_id = answer.waiting["call_id"]
        answer.waiting = None
        await self.post({"type": "tool.confirm", "call_id": call_id, "approve": approve})
        return await self._follow(answer, timeout)

    async def _follow(self, answer: Answer, timeout: float) -> Answer:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.receive(timeout)
                turn = frame.get("turn_id")
                if turn is not None and answer.turn_id not in (None, turn):
                    continue  # another turn's (a reminder's, another tab's)
                if frame.get("type") in ("logged", "pong"):
                    continue
                answer.see(frame)
                if frame.get("type") in ENDS or answer.waiting is not None:
                    return answer
