"""What the provider test servers share: a script of replies, a record of requests, and a
uvicorn server in a background thread on 127.0.0.1 with an ephemeral port.

Token counts in a `Reply` are in threadline's convention (input includes cached tokens,
output includes reasoning tokens); each server writes them the way its provider does.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse

# The failures a reply can script. HTTP errors answer before any body; the stream ones
# break a stream after `break_after` text chunks.
HTTP_ERRORS = (
    "rate_limited",
    "server_error",
    "unavailable",
    "overloaded",
    "context_length",
    "unauthorized",
    "not_found",
    "bad_request",
)
STREAM_ERRORS = ("malformed_stream", "cut_stream", "stream_error")


@dataclass(frozen=True)
class ScriptedCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Reply:
    text: str = "Hello there! The answer is forty-two, as always."
    chunks: int = 3
    tool_calls: list[ScriptedCall] = field(default_factory=list)
    input_tokens: int = 21
    output_tokens: int = 13
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    model: str | None = None
    stop: str = "end"  # "end", "max_tokens" or "filtered" (refusal / SAFETY)
    error: str | None = None
    retry_after: str | None = "7"
    break_after: int = 2
    delay: float = 0.0  # seconds to wait before answering (client timeouts)
    send_usage: bool = True  # OpenAI-compatible servers may ignore include_usage

    def pieces(self) -> list[str]:
        """The text split at word boundaries into about `chunks` pieces."""
        words = self.text.split(" ")
        if len(words) <= 1 or self.chunks <= 1:
            return [self.text] if self.text else []
        size = max(1, -(-len(words) // self.chunks))
        groups = [words[i : i + size] for i in range(0, len(words), size)]
        pieces = [" ".join(g) + " " for g in groups]
        pieces[-1] = pieces[-1][:-1]
        return pieces

    async def wait(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)

    def partial_text(self) -> str:
        """What a stream broken by a scripted stream error delivered before the break."""
        return "".join(self.pieces()[: self.break_after])


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class Script:
    """Replies to serve in order (then the default reply) and the requests received."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[RecordedRequest] = []

    def reset(self) -> None:
        with self._lock:
            self._replies.clear()
            self.default = Reply()
            self.requests = []

    def reply(self, **fields: Any) -> Reply:
        reply = Reply(**fields)
        with self._lock:
            self._replies.append(reply)
        return reply

    def next(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else self.default

    async def record(self, request: Request) -> RecordedRequest:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        recorded = RecordedRequest(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    @property
    def last(self) -> RecordedRequest:
        return self.requests[-1]


class AbortStream(Exception):
    """Raised inside a streaming body: uvicorn then drops the connection mid-body."""


def streaming(
    chunks: Iterable[str], *, media_type: str, abort_at_end: bool = False
) -> StreamingResponse:
    """A chunked response that writes each chunk separately (a small pause lets each reach
    the client as its own read), optionally cut without its terminating chunk."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk.encode("utf-8")
            await asyncio.sleep(0.001)
        if abort_at_end:
            raise AbortStream("scripted cut")

    return StreamingResponse(body(), media_type=media_type)


def sse(event: str | None, data: Any) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n"


Handler = Callable[[Request], Awaitable[Any]]


@dataclass
class ProviderServer:
    """A running test server: `url` to point the SDK at, `script` to steer it."""

    url: str
    script: Script
    _server: uvicorn.Server
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def start_server(app: Starlette, script: Script) -> ProviderServer:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="provider-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return ProviderServer(f"http://127.0.0.1:{port}", script, server, thread)
