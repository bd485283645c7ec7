"""Writes to one session WebSocket, in order: frames a task sends (awaited), and live pieces
taken from the hub within the step that made them, written in one burst per pass of the
loop for every connection that has some; pieces of an answer that wait together leave
joined, in one frame."""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket

from ...loop import start_eagerly
from ...sessions.events import Live, encode
from ...sessions.frames import live_text, own_fields
from ..protocol import SEND_NOW

log = logging.getLogger(__name__)


class SocketWriter:
    """A live piece waits in `_outbox` for the end of the loop's pass, when every
    connection's waiting pieces are written in one burst (see `_Burst`). `_flight`: a write
    that had to wait for the socket (the rest wait behind it). `broken`: a write failed, the
    client is gone (the receiving side ends the connection)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.broken = False
        self._lock = asyncio.Lock()
        self._outbox: list[Live] = []
        self._flight: asyncio.Task[None] | None = None
        self._burst = _burst()
        # Served by `threadline serve`: frames can be written past ASGI (see `SEND_NOW`).
        scope = getattr(ws, "scope", None) or {}
        self._now: Callable[[str], bool] | None = scope.get("extensions", {}).get(SEND_NOW)

    @property
    def writing(self) -> bool:
        """A write is on its way: a frame a task sends, or one the socket has yet to take."""
        return self._flight is not None or self._lock.locked()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.send_text(json.dumps(frame))

    async def send_text(self, text: str) -> None:
        async with self._lock:
            self.drain()  # live pieces taken before this frame go first
            while self._flight is not None:
                await asyncio.wait([self._flight])
            await self.ws.send_text(text)

    def queue(self, live: Live) -> None:
        """A live piece, for this pass's burst."""
        if not self._outbox:
            self._burst.add(self)
        self._outbox.append(live)

    def drain(self) -> None:
        """Write the pieces in `_outbox`, in order, without waiting for the loop (a write
        the socket cannot take yet carries on in `_flight`, the rest behind it); each run
        of pieces that follow each other in one frame (a model that gave several in one
        pass, or pieces that waited for the socket)."""
        now = self._now
        outbox = self._outbox
        while outbox and self._flight is None:
            if len(outbox) == 1:  # the usual: one piece a pass
                text = outbox.pop().text
            else:
                end = 1
                while end < len(outbox) and follows(outbox[end - 1], outbox[end]):
                    end += 1
                text = joined(outbox[:end])
                del outbox[:end]
            if now is not None and now(text):
                continue
            try:
                flight = start_eagerly(self.ws.send_text(text))
            except Exception as exc:  # the client is gone: the receiving side ends the rest
                log.debug("a live piece could not be sent: %s", exc)
                self.broken = True
                self._outbox.clear()
                return
            if flight is not None:
                self._flight = flight
                flight.add_done_callback(self._landed)

    def _landed(self, flight: asyncio.Task[None]) -> None:
        self._flight = None
        if not flight.cancelled() and flight.exception() is not None:
            self.broken = True
            self._outbox.clear()
        self.drain()

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, reason=reason)

    def stop(self) -> None:
        """The connection ends: a write still waiting for the socket is dropped."""
        if self._flight is not None:
            self._flight.cancel()


class _Burst:
    """The writers with live pieces waiting, written together once the loop has run what
    is ready now: one tight burst of writes per pass instead of one write between each model
    step and the next. A client's process wakes once for the burst, not once a piece (on a
    small machine, waking a process costs more than the write), and no task is woken per
    piece."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: list[SocketWriter] = []

    def add(self, writer: SocketWriter) -> None:
        if not self._waiting:
            self._loop.call_soon(self._flush)
        self._waiting.append(writer)

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for writer in waiting:
            writer.drain()


_bursts: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Burst] = weakref.WeakKeyDictionary()


def _burst() -> _Burst:
    loop = asyncio.get_running_loop()
    burst = _bursts.get(loop)
    if burst is None:
        burst = _bursts[loop] = _Burst(loop)
    return burst


def follows(before: Live, live: Live) -> bool:
    """`live` is the piece of the same answer right after `before`."""
    return (
        live.type == before.type == "message.delta"
        and live.piece.turn_id == before.piece.turn_id
        and live.piece.offset == before.piece.end
    )


def joined(run: list[Live]) -> str:
    """One `message.delta` frame for pieces that follow each other: the first's fields, the
    texts joined (as the log joins pieces it writes late; see docs/protocol.md)."""
    if len(run) == 1:
        return run[0].text
    data = own_fields(orjson.loads(run[0].text))
    data["text"] = "".join(orjson.loads(live.text)["text"] for live in run)
    return live_text(run[0].type, encode(data))
