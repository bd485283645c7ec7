"""The WebSocket protocol of a session (see docs/protocol.md).

Client frames: `message.send {client_id, text}`, `resume {after_seq}`, `cancel`, `ping`.
Server frames: the session's logged events, each with its `seq`, plus `session.state` on
connect and `error {code, message}` for a bad frame (the connection stays open).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import PayloadTooLarge, ThreadlineError
from ..sessions import Sessions
from .hub import Hub

MAX_FRAME_BYTES = 32 * 1024
FLOOD_LIMIT = 8  # messages per FLOOD_WINDOW seconds on one connection
FLOOD_WINDOW = 10.0


class Connection:
    def __init__(self, ws: WebSocket, sessions: Sessions, hub: Hub, session_id: str) -> None:
        self.ws = ws
        self.sessions = sessions
        self.hub = hub
        self.session_id = session_id
        self.cursor: int | None = None  # the last seq sent; None until the stream starts
        self.behind = False  # the log may hold events not yet sent
        self.sub = hub.subscribe(session_id)
        self.sent_at: list[float] = []
        self._send_lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        async with self._send_lock:
            await self.ws.send_text(text)

    async def error(self, code: str, message: str) -> None:
        await self.send({"type": "error", "code": code, "message": message})

    async def run(self) -> None:
        info = await self.sessions.get(self.session_id)
        await self.send(
            {
                "type": "session.state",
                "session_id": info.id,
                "agent": info.agent,
                "state": info.state,
                "status": info.status,
                "last_seq": info.event_seq,
            }
        )
        forwarder = asyncio.create_task(self._forward())
        try:
            while True:
                raw = await self.ws.receive_text()
                await self._handle(raw)
        except WebSocketDisconnect:
            pass
        finally:
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarder
            self.hub.unsubscribe(self.session_id, self.sub)

    async def _handle(self, raw: str) -> None:
        if len(raw.encode()) > MAX_FRAME_BYTES:
            await self.error("too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            await self.error("bad_frame", "frames must be JSON objects")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.error("bad_frame", "frames must be JSON objects with a 'type'")
            return
        kind = frame["type"]
        if kind == "resume":
            after = frame.get("after_seq", 0)
            if not isinstance(after, int) or after < 0:
                await self.error("bad_frame", "resume needs after_seq, a whole number >= 0")
                return
            self._start_at(after)
        elif kind == "message.send":
            await self._send_message(frame)
        elif kind == "cancel":
            await self.sessions.cancel(self.session_id)
        elif kind == "tool.confirm":
            call_id, approve = frame.get("call_id"), frame.get("approve")
            if not isinstance(call_id, str) or not isinstance(approve, bool):
                await self.error("bad_frame", "tool.confirm needs call_id and approve (boolean)")
            elif not await self.sessions.confirm(self.session_id, call_id, approve):
                await self.error("not_waiting", f"no tool call {call_id!r} awaits approval")
        elif kind == "ping":
            await self.send({"type": "pong"})
        else:
            await self.error("unknown_type", f"unknown frame type {kind!r}")

    async def _send_message(self, frame: dict[str, Any]) -> None:
        text, client_id = frame.get("text"), frame.get("client_id")
        if not isinstance(text, str) or not isinstance(client_id, str):
            await self.error("bad_frame", "message.send needs text and client_id strings")
            return
        now = time.monotonic()
        self.sent_at = [t for t in self.sent_at if now - t < FLOOD_WINDOW]
        if len(self.sent_at) >= FLOOD_LIMIT:
            await self.error("rate_limited", "too many messages; wait a few seconds")
            return
        self.sent_at.append(now)
        if self.cursor is None:
            self._start_at((await self.sessions.get(self.session_id)).event_seq)
        try:
            await self.sessions.send(self.session_id, text, client_id)
        except PayloadTooLarge as exc:
            await self.error("too_large", str(exc))
        except ThreadlineError as exc:
            await self.error("bad_message", str(exc))

    def _start_at(self, after_seq: int) -> None:
        if self.cursor is None or after_seq < self.cursor:
            self.cursor = after_seq
            self.behind = True
        self.sub.wake.set()

    async def _forward(self) -> None:
        """Send logged events after the cursor, in order, each once; sleep until woken."""
        sub = self.sub
        while True:
            await sub.wake.wait()
            sub.wake.clear()
            if sub.stale:  # quiet for seconds: a lost notification costs that, never an event
                sub.stale = False
                self.behind = True
            if self.cursor is None:
                continue
            frames, gap = sub.take(self.cursor)
            for frame in frames:
                await self.send_text(frame.text)  # type: ignore[arg-type]  # take(): not None
                self.cursor = frame.seq
            if gap or self.behind:
                self.behind = False
                await self._catch_up()

    async def _catch_up(self) -> None:
        """Read the log after the cursor until it has nothing newer."""
        while self.cursor is not None:
            events = await self.sessions.read(self.session_id, self.cursor)
            if not events:
                return
            for event in events:
                await self.send(event.frame())
                self.cursor = event.seq
