"""`threadline serve`'s WebSocket protocol writes a text frame past ASGI (`SEND_NOW`) only when
the socket takes it at once; otherwise it says so and the frame goes the ASGI way, in order."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
import websockets
from fastapi import FastAPI, WebSocket

from threadline.web.limits import Limits
from threadline.web.protocol import SEND_NOW
from threadline.web.serve import uvicorn_config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_frame_goes_past_asgi_only_while_the_socket_takes_writes() -> None:
    app = FastAPI()
    seen: dict[str, Any] = {}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        now = websocket.scope["extensions"][SEND_NOW]
        protocol = now.__self__
        protocol.pause_writing()  # the socket's buffer is full
        seen["paused"] = now("one")
        protocol.resume_writing()
        seen["resumed"] = now("two")
        await websocket.send_text("three")  # the ASGI way: after what went past it
        await websocket.receive_text()
        await websocket.close()
        seen["closed"] = now("four")

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, Limits()))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to await
            await asyncio.sleep(0.01)
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as client:
            frames = [await client.recv(), await client.recv()]
            await client.send("done")
            await client.wait_closed()
    finally:
        server.should_exit = True
        await task
    assert frames == ["two", "three"]
    assert seen == {"paused": False, "resumed": True, "closed": False}
