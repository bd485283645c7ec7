"""`threadline chat AGENT`: a terminal client that streams a session over the WebSocket."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import websockets

from ..loop import run as run_loop

Write = Callable[[str], None]


async def stdin_lines(prompt: str = "you> ") -> AsyncIterator[str]:
    """Lines typed on the terminal, read without blocking the event loop."""
    while True:
        line = await asyncio.to_thread(_read, prompt)
        if line is None:
            return
        yield line


def _read(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


async def chat(
    url: str, agent: str, lines: AsyncIterator[str], write: Write = print
) -> dict[str, Any]:
    """Start a session with `agent` on the server at `url`; send each line, print each
    answer as it streams. A lost connection (a server restart) is opened again and the
    session resumed where it was. Returns the session (id and token) for later resumption."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        r = await http.post("/v1/sessions", json={"agent": agent})
        if r.status_code != 201:
            raise RuntimeError(f"could not start a session: {r.status_code} {r.text}")
        session: dict[str, Any] = r.json()
    ws_url = (
        f"{url.replace('http', 'ws', 1)}/v1/sessions/{session['session_id']}/ws"
        f"?token={session['token']}"
    )
    link = _Link(ws_url, write)
    try:
        await link.open()
        n = 0
        async for line in lines:
            if not line.strip():
                continue
            n += 1
            await link.send({"type": "message.send", "client_id": f"t{n}", "text": line})
            await _print_answer(link, write)
    finally:
        await link.close()
    return session


class _Link:
    """The session's WebSocket, opened again when it drops (up to `RECONNECT_FOR_S`): it
    resumes after the last numbered frame it had and tells how much of the answer in progress
    is on screen, and sends again the message whose answer had not ended (the server keeps
    one message per client id)."""

    RECONNECT_FOR_S = 60.0

    def __init__(self, url: str, write: Write) -> None:
        self.url = url
        self.write = write
        self.ws: Any = None
        self.last_seq = 0
        self.pending: dict[str, Any] | None = None  # the message whose answer is awaited
        self.turn: tuple[str, float | None] | None = None  # answer in progress, its start
        self.shown = 0  # code points of that answer printed

    async def open(self) -> None:
        self.ws = await websockets.connect(self.url)
        await self.ws.recv()  # session.state
        resume: dict[str, Any] = {"type": "resume", "after_seq": self.last_seq}
        if self.turn is not None:
            resume |= {"turn_id": self.turn[0], "started": self.turn[1], "shown": self.shown}
        await self.ws.send(json.dumps(resume))

    async def reopen(self) -> None:
        self.write("\n[connection lost; reconnecting]\n")
        loop = asyncio.get_running_loop()
        give_up, delay = loop.time() + self.RECONNECT_FOR_S, 0.25
        while True:
            try:
                await self.open()
                break
            except (OSError, websockets.WebSocketException) as exc:
                if loop.time() + delay > give_up:
                    raise OSError(f"the server did not come back: {exc}") from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 4.0)
        if self.pending is not None:
            await self.ws.send(json.dumps(self.pending))

    async def send(self, frame: dict[str, Any]) -> None:
        self.pending = frame
        try:
            await self.ws.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            await self.reopen()

    async def recv(self) -> dict[str, Any]:
        while True:
            try:
                frame: dict[str, Any] = json.loads(await self.ws.recv())
            except websockets.ConnectionClosed:
                await self.reopen()
                continue
            seq = frame.get("seq")
            if isinstance(seq, int):
                if seq <= self.last_seq:
                    continue  # had it before the connection dropped
                self.last_seq = seq
            return frame

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def _print_answer(link: _Link, write: Write) -> None:
    while True:
        frame = await link.recv()
        kind = frame["type"]
        if kind in ("message.greeting", "message.reminder", "operator.message"):
            write(f"{frame['text']}\n")
        elif kind in ("message.start", "message.restart"):
            keep = frame.get("keep") or 0  # what the answer keeps of its text so far
            if link.turn is not None and link.turn[0] == frame["turn_id"] and link.shown > keep:
                write("\n[the answer starts again]\n")
            link.turn, link.shown = (frame["turn_id"], frame.get("ts")), keep
        elif kind == "message.delta":
            piece = frame["text"]
            offset = frame.get("offset")
            if isinstance(offset, int):  # place it: what is on screen already is skipped
                piece = piece[max(0, link.shown - offset) :]
                link.shown = max(link.shown, offset + len(frame["text"]))
            write(piece)
        elif kind == "tool.call":
            write(f"\n[tool {frame['name']} {json.dumps(frame['arguments'])}]\n")
        elif kind == "error":
            write(f"\n[error {frame['code']}: {frame['message']}]\n")
            if frame["code"] != "rate_limited":
                link.pending = None
                return
        elif kind == "message.error":
            again = " (sending it again may work)" if frame.get("retryable") else ""
            write(f"\n[error {frame['code']}: {frame['message']}{again}]\n")
            link.pending, link.turn = None, None
            return
        elif kind in ("message.end", "message.cancelled"):
            cost = frame.get("cost")
            write(f"\n[{frame.get('model') or ''} ${cost}]\n" if cost is not None else "\n")
            link.pending, link.turn = None, None
            return


def run(url: str, agent: str) -> None:
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    run_loop(chat(url, agent, stdin_lines(), write))


__all__ = ["chat", "run", "stdin_lines"]
