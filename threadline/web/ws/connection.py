"""The WebSocket protocol of a session (see docs/protocol.md).

Client frames: `message.send {client_id, text}`, `resume {after_seq, turn_id?, started?,
shown?}`, `cancel`, `ping`. Server frames: the session's logged events, each with its `seq`,
plus `session.state` on connect and `error {code, message}` for a bad frame (the connection
stays open). An answer's beginning and pieces made in this process go out as they are made,
before they are logged and so without a `seq`; the connection remembers how much of the
answer its client has, so the logged copy of what it sent is skipped, never sent twice
(forward.py, answer.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ...errors import PayloadTooLarge, ThreadlineError
from ...sessions import Sessions
from ...sessions.text import storable
from ..hub import Hub
from ..limits import Limiter, Limits
from .answer import ShownAnswer
from .forward import Forwarder
from .writer import SocketWriter

MAX_FRAME_BYTES = 32 * 1024
MAX_SEQ = 2**63 - 1  # a seq is a PostgreSQL bigint


class Connection:
    """One client's WebSocket on a session: its frames read and acted on here; the session's
    events sent by the forwarder."""

    def __init__(
        self,
        ws: WebSocket,
        sessions: Sessions,
        hub: Hub,
        session_id: str,
        limiter: Limiter | None = None,
        generation: int = 0,
    ) -> None:
        self.ws = ws
        self.sessions = sessions
        self.hub = hub
        self.session_id = session_id
        # Messages count per client address and per session (the app's limiter; alone, the
        # connection's own).
        self.limiter = limiter or Limiter(Limits())
        self.sub = hub.subscribe(session_id, live=True)
        self.answer = ShownAnswer()
        self.writer = SocketWriter(ws)
        self.forwarder = Forwarder(
            sessions, session_id, self.sub, self.writer, self.answer, generation
        )

    @property
    def cursor(self) -> int | None:
        """The last seq sent; None until the stream starts."""
        return self.forwarder.cursor

    async def send(self, frame: dict[str, Any]) -> None:
        await self.writer.send(frame)

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
        forwarder = asyncio.create_task(self.forwarder.run())
        try:
            while True:
                raw = await self._receive_text()
                if raw is None:
                    await self.error("bad_frame", "frames are JSON text, not binary")
                else:
                    await self._handle(raw)
        except WebSocketDisconnect:
            pass
        finally:
            self.hub.unsubscribe(self.session_id, self.sub)
            self.sub.direct = None
            forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarder
            self.writer.stop()

    async def _receive_text(self) -> str | None:
        """The next frame's text; None for a binary frame, whose ASGI message has no text
        (uvicorn leaves the key out: Starlette's `receive_text` fails on it)."""
        try:
            text: str | None = await self.ws.receive_text()
        except KeyError:
            return None
        return text

    async def _handle(self, raw: str) -> None:
        if len(raw.encode()) > MAX_FRAME_BYTES:
            await self.error("too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
            return
        try:
            frame = json.loads(raw)
        except (ValueError, RecursionError):  # (nested deeper than the parser goes)
            await self.error("bad_frame", "frames must be JSON objects")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.error("bad_frame", "frames must be JSON objects with a 'type'")
            return
        kind = frame["type"]
        if kind == "resume":
            await self._resume(frame)
        elif kind == "message.send":
            await self._send_message(frame)
        elif kind == "cancel":
            await self.sessions.cancel(self.session_id)
        elif kind == "tool.confirm":
            await self._confirm(frame)
        elif kind == "ping":
            await self.send({"type": "pong"})
        else:
            await self.error("unknown_type", f"unknown frame type {kind!r}")

    async def _resume(self, frame: dict[str, Any]) -> None:
        after = frame.get("after_seq", 0)
        if not _whole(after):
            await self.error("bad_frame", f"resume's after_seq is a whole number 0..{MAX_SEQ}")
            return
        turn_id, started = frame.get("turn_id"), frame.get("started")
        shown = frame.get("shown", 0)
        if turn_id is not None and (
            not isinstance(turn_id, str)
            or not (started is None or _finite(started))
            or not _whole(shown)
        ):
            await self.error(
                "bad_frame",
                "resume's turn_id is a string, started a number, shown a whole number >= 0",
            )
            return
        # The answer the client shows: what it has of it is not sent again.
        self.answer.resume(turn_id, started, shown)
        self.forwarder.start_at(after)

    async def _confirm(self, frame: dict[str, Any]) -> None:
        call_id, approve = frame.get("call_id"), frame.get("approve")
        if not isinstance(call_id, str) or not isinstance(approve, bool):
            await self.error("bad_frame", "tool.confirm needs call_id and approve (boolean)")
        # (an id with a NUL names no call, and would fail in the database)
        elif not storable(call_id) or not await self.sessions.confirm(
            self.session_id, call_id, approve
        ):
            await self.error("not_waiting", f"no tool call {call_id!r} awaits approval")

    async def _send_message(self, frame: dict[str, Any]) -> None:
        text, client_id = frame.get("text"), frame.get("client_id")
        if not isinstance(text, str) or not isinstance(client_id, str):
            await self.error("bad_frame", "message.send needs text and client_id strings")
            return
        client = self.ws.client.host if self.ws.client else None
        wait = self.limiter.message(client, self.session_id)
        if wait:
            await self.error("rate_limited", f"too many messages; wait {math.ceil(wait)} s")
            return
        if self.cursor is None:
            self.forwarder.start_at((await self.sessions.get(self.session_id)).event_seq)
        try:
            await self.sessions.send(self.session_id, text, client_id)
        except PayloadTooLarge as exc:
            await self.error("too_large", str(exc))
        except ThreadlineError as exc:
            await self.error("bad_message", str(exc))


def _whole(value: object) -> bool:
    """A whole number a seq or an offset can be (JSON's true is no number)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


def _finite(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and abs(value) < 1e15  # before a float() that a huge int would overflow
        and math.isfinite(value)
    )
