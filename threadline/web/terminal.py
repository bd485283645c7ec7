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
    answer as it streams. Returns the session (id and token) for later resumption."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        r = await http.post("/v1/sessions", json={"agent": agent})
        if r.status_code != 201:
            raise RuntimeError(f"could not start a session: {r.status_code} {r.text}")
        session: dict[str, Any] = r.json()
    ws_url = (
        f"{url.replace('http', 'ws', 1)}/v1/sessions/{session['session_id']}/ws"
        f"?token={session['token']}"
    )
    async with websockets.connect(ws_url) as ws:
        await ws.recv()  # session.state
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        n = 0
        async for line in lines:
            if not line.strip():
                continue
            n += 1
            await ws.send(json.dumps({"type": "message.send", "client_id": f"t{n}", "text": line}))
            await _print_answer(ws, write)
    return session


async def _print_answer(ws: Any, write: Write) -> None:
    while True:
        frame = json.loads(await ws.recv())
        kind = frame["type"]
        if kind in ("message.greeting", "message.reminder", "operator.message"):
            write(f"{frame['text']}\n")
        elif kind == "message.delta":
            write(frame["text"])
        elif kind == "tool.call":
            write(f"\n[tool {frame['name']} {json.dumps(frame['arguments'])}]\n")
        elif kind == "error":
            write(f"\n[error {frame['code']}: {frame['message']}]\n")
            if frame["code"] != "rate_limited":
                return
        elif kind == "message.error":
            again = " (sending it again may work)" if frame.get("retryable") else ""
            write(f"\n[error {frame['code']}: {frame['message']}{again}]\n")
            return
        elif kind in ("message.end", "message.cancelled"):
            cost = frame.get("cost")
            write(f"\n[{frame.get('model') or ''} ${cost}]\n" if cost is not None else "\n")
            return


def run(url: str, agent: str) -> None:
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    run_loop(chat(url, agent, stdin_lines(), write))


__all__ = ["chat", "run", "stdin_lines"]
