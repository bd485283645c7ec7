"""The WebSocket protocol of a session (see docs/protocol.md).

Client frames: `message.send {client_id, text}`, `resume {after_seq, turn_id?, started?,
shown?}`, `cancel`, `ping`. Server frames: the session's logged events, each with its `seq`,
plus `session.state` on connect and `error {code, message}` for a bad frame (the connection
stays open). An answer's beginning and pieces made in this process go out as they are made,
before they are logged and so without a `seq`; the connection remembers how much of the
answer its client has, so the logged copy of what it sent is skipped, never sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import weakref
from collections.abc import Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import PayloadTooLarge, ThreadlineError
from ..loop import start_eagerly
from ..sessions import Sessions
from ..sessions.events import ANSWER_TYPES, Committed, Live, Piece, piece_of
from ..sessions.text import storable
from .handshake import REVOKED
from .hub import Hub
from .limits import Limiter, Limits

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 32 * 1024
MAX_SEQ = 2**63 - 1  # a seq is a PostgreSQL bigint


class Connection:
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
        self.generation = generation  # of the token the connection was opened with
        self.sessions = sessions
        self.hub = hub
        self.session_id = session_id
        # Messages count per client address and per session (the app's limiter; alone, the
        # connection's own).
        self.limiter = limiter or Limiter(Limits())
        self.cursor: int | None = None  # the last seq sent; None until the stream starts
        self.behind = False  # the log may hold events not yet sent
        self.sub = hub.subscribe(session_id, live=True)
        # The answer the client has: `turn_id`'s, begun at `started` (its start's `ts`), up
        # to `shown` code points (turn_id None: unknown, nothing goes out live until the next
        # answer starts).
        self.turn_id: str | None = None
        self.started: float | None = None
        self.shown = 0
        # Logged events the client already has (sent live) and has not been told the seqs
        # of: (first, last). A `logged` frame tells it before the next logged frame goes
        # out, so the seqs a client sees have no gaps (one frame per answer, not per piece).
        self._had: tuple[int, int] | None = None
        self._send_lock = asyncio.Lock()
        # A live piece that nothing is ahead of skips the forwarder: it waits in `_outbox`
        # for the end of the loop's pass, when every connection's waiting pieces are written
        # in one burst (see `_Burst`). `_busy`: the forwarder has taken frames it has not all
        # sent; `_flight`: a write that had to wait for the socket (the rest wait behind it).
        self._outbox: list[str] = []
        self._busy = False
        self._flight: asyncio.Task[None] | None = None
        self._broken = False
        self._burst = _burst()
        self.sub.direct = self._live_now

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        async with self._send_lock:
            self._drain()  # live pieces taken before this frame go first
            while self._flight is not None:
                await asyncio.wait([self._flight])
            await self.ws.send_text(text)

    def _live_now(self, live: Live) -> bool:
        """Take a live piece for this pass's burst if nothing is on its way to the client
        before it; False leaves it to the forwarder (which keeps the order)."""
        if (
            self._busy
            or self.sub.wake.is_set()
            or self.sub.live
            or self._flight is not None
            or self._send_lock.locked()
        ):
            return False
        if self.cursor is None or self._broken:
            return True  # nothing goes out before the client says from where
        if not self._continues(live):
            # The log brings it, and what comes before it, which the forwarder is woken to
            # send (a logged copy of a live piece wakes nobody).
            return False
        if self._fit(live.type, live.piece, dict) is _WHOLE:
            if not self._outbox:
                self._burst.add(self)
            self._outbox.append(live.text)
        return True

    def _continues(self, live: Live) -> bool:
        """Whether a live event continues the answer the client has (a beginning always
        may: it starts the answer over)."""
        piece = live.piece
        return live.type != "message.delta" or (
            piece.turn_id == self.turn_id and piece.offset == self.shown
        )

    def _drain(self) -> None:
        """Write the pieces in `_outbox`, in order, without waiting for the loop (a write
        the socket cannot take yet carries on in `_flight`, the rest behind it)."""
        while self._outbox and self._flight is None:
            text = self._outbox.pop(0)
            try:
                flight = start_eagerly(self.ws.send_text(text))
            except Exception as exc:  # the client is gone: the receiving side ends the rest
                log.debug("a live piece could not be sent: %s", exc)
                self._broken = True
                self._outbox.clear()
                return
            if flight is not None:
                self._flight = flight
                flight.add_done_callback(self._landed)

    def _landed(self, flight: asyncio.Task[None]) -> None:
        self._flight = None
        if not flight.cancelled() and flight.exception() is not None:
            self._broken = True
            self._outbox.clear()
        self._drain()

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
            if self._flight is not None:
                self._flight.cancel()

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
            self.turn_id = turn_id
            self.started = float(started) if turn_id is not None and started is not None else None
            self.shown = shown if turn_id is not None else 0
            self._start_at(after)
        elif kind == "message.send":
            await self._send_message(frame)
        elif kind == "cancel":
            await self.sessions.cancel(self.session_id)
        elif kind == "tool.confirm":
            call_id, approve = frame.get("call_id"), frame.get("approve")
            if not isinstance(call_id, str) or not isinstance(approve, bool):
                await self.error("bad_frame", "tool.confirm needs call_id and approve (boolean)")
            # (an id with a NUL names no call, and would fail in the database)
            elif not storable(call_id) or not await self.sessions.confirm(
                self.session_id, call_id, approve
            ):
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
        client = self.ws.client.host if self.ws.client else None
        wait = self.limiter.message(client, self.session_id)
        if wait:
            await self.error("rate_limited", f"too many messages; wait {math.ceil(wait)} s")
            return
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
            self._had = None  # read again from the log
        self.sub.wake.set()

    async def _forward(self) -> None:
        """Send logged events after the cursor, in order, each once; sleep until woken."""
        sub = self.sub
        while True:
            self._busy = False
            await sub.wake.wait()
            self._busy = True
            sub.wake.clear()
            if sub.stale:  # quiet for seconds: a lost notification costs that, never an event
                sub.stale = False
                self.behind = True
            if self.cursor is None:
                if sub.live:
                    sub.live.clear()  # nothing goes out before the client says from where
                continue
            frames, gap = sub.take(self.cursor)
            for frame in frames:
                await self._send_logged(frame)
                self.cursor = frame.seq
            if gap or self.behind:
                self.behind = False
                await self._catch_up()
            if sub.live:
                await self._send_live()

    async def _send_live(self) -> None:
        """Send the live events that continue what the client has; the others come from
        the log (a piece after one still on its way there)."""
        events, self.sub.live = self.sub.live or [], []
        for live in events:
            if self._continues(live) and self._fit(live.type, live.piece, dict) is _WHOLE:
                await self.send_text(live.text)

    async def _send_logged(self, event: Committed) -> None:
        text = event.text
        assert text is not None  # take() gives whole frames only
        piece = event.piece
        if piece is None and event.type in ANSWER_TYPES and self.turn_id is not None:
            piece = piece_of(event.type, json.loads(text))  # another process wrote it
        frame = self._fit(event.type, piece, lambda: json.loads(text))
        if frame is None:
            self._had_it(event.seq)
            return
        await self._tell_had()
        if frame is _WHOLE:
            await self.send_text(text)
        else:
            await self.send(frame)
        if event.type == REVOKED:
            await self._close_if_revoked(json.loads(text))

    def _had_it(self, seq: int) -> None:
        self._had = (seq, seq) if self._had is None else (self._had[0], seq)

    async def _tell_had(self) -> None:
        if self._had is not None:
            first, last = self._had
            self._had = None
            await self.send({"type": "logged", "first": first, "seq": last})

    def _fit(
        self, type: str, piece: Piece | None, frame: Callable[[], dict[str, Any]]
    ) -> dict[str, Any] | None:
        """What of an event to send, given the answer the client has: `_WHOLE`, a trimmed
        frame (the part of a piece the client lacks), or None (it has all of it)."""
        if type not in ANSWER_TYPES:
            return _WHOLE
        if piece is None:  # not placed: send it, and lose track of the client's answer
            self.turn_id = None
            return _WHOLE
        if type != "message.delta":
            if (
                piece.turn_id == self.turn_id
                and piece.started is not None
                and piece.started == self.started
            ):
                return None  # the beginning the client has (it went out live)
            # The answer (re)starts: the client keeps its first `keep` code points (the
            # rounds before; a client that reads the log got them).
            same = piece.turn_id == self.turn_id
            self.shown = min(self.shown, piece.offset) if same else piece.offset
            self.turn_id, self.started = piece.turn_id, piece.started
            return _WHOLE
        if piece.turn_id != self.turn_id or piece.offset >= self.shown:
            if piece.turn_id != self.turn_id:
                self.turn_id, self.started = piece.turn_id, None
            self.shown = piece.end
            return _WHOLE
        if piece.end <= self.shown:
            return None  # sent live, or shown before a reconnect
        trimmed = frame()
        trimmed["text"] = trimmed["text"][self.shown - piece.offset :]
        trimmed["offset"] = self.shown
        self.shown = piece.end
        return trimmed

    async def _catch_up(self) -> None:
        """Read the log after the cursor until it has nothing newer."""
        while self.cursor is not None:
            events = await self.sessions.read(self.session_id, self.cursor)
            if not events:
                return
            for event in events:
                frame = self._fit(event.type, piece_of(event.type, event.data), event.frame)
                if frame is None:
                    self._had_it(event.seq)
                else:
                    await self._tell_had()
                    await self.send(event.frame() if frame is _WHOLE else frame)
                self.cursor = event.seq
                if event.type == REVOKED:
                    await self._close_if_revoked(event.data)

    async def _close_if_revoked(self, data: dict[str, Any]) -> None:
        """The session's tokens were revoked after this connection's was issued: it ends
        (4401, as a refused token; the client's token no longer opens the session)."""
        if isinstance(data.get("generation"), int) and data["generation"] > self.generation:
            await self.ws.close(code=4401, reason="the session's tokens were revoked")
            raise asyncio.CancelledError  # the forwarder stops; the receive loop sees the close


_WHOLE: dict[str, Any] = {}  # `Connection._fit`: send the event as it is


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


class _Burst:
    """The connections with live pieces waiting, written together once the loop has run
    what is ready now: one tight burst of writes per pass instead of one write between each
    model step and the next. A client's process wakes once for the burst, not once a piece
    (on a small machine, waking a process costs more than the write), and no task is woken
    per piece."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: list[Connection] = []

    def add(self, conn: Connection) -> None:
        if not self._waiting:
            self._loop.call_soon(self._flush)
        self._waiting.append(conn)

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for conn in waiting:
            conn._drain()


_bursts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Burst] = weakref.WeakKeyDictionary()


def _burst() -> _Burst:
    loop = asyncio.get_running_loop()
    burst = _bursts.get(loop)
    if burst is None:
        burst = _bursts[loop] = _Burst(loop)
    return burst
