"""The protocol of the `ai` package's `WebSocketChatTransport`: correlated UI message streams
over one WebSocket per session, `GET /v1/sessions/{id}/ai-sdk/ws?token=TOKEN`.

Client frames (`WebSocketChatTransportRequest`): `send {requestId, id, trigger, messageId,
messages, headers, body, metadata}` (a useChat request, acted on as the HTTP route does: see
`aisdk.submit`), `resume {requestId, id, lastSequence?, …}` (the active turn's stream from its
start, its chunks after `lastSequence` when given) and `abort {requestId}` (stop sending that
stream; the turn goes on, as it does when an HTTP stream is dropped). Server frames
(`WebSocketChatTransportResponse`): `start`, `chunk {sequence, chunk}` (sequence 0, 1, 2, …
per request), `end`, `error {errorText}` (the request could not be acted on) and `no-active`
(a resume with no turn in progress), each with its request's `requestId`. A frame that names
no request cannot be answered: the connection closes with 4400. A `send` over the rate of
messages (per client address, per session) is refused with `error {code: "rate_limited"}`.
Once the session's tokens are revoked, the connection closes with 4401, as the session's own
WebSocket does."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from typing import Any

from starlette.websockets import WebSocket

from ..errors import ConfigurationError, PayloadTooLarge
from ..sessions import Sessions, UnknownSession
from . import aisdk
from .auth import Auth
from .handshake import REVOKED, admitted, revokes
from .hub import Hub
from .limits import Limiter, Limits

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 1024 * 1024  # useChat sends the whole conversation with each message
MAX_REQUESTS = 16  # streams open at once on one connection


async def serve(
    ws: WebSocket,
    sessions: Sessions,
    hub: Hub,
    auth: Auth,
    limiter: Limiter,
    session_id: str,
    token: str | None,
) -> None:
    """Admit the connection as the session's own WebSocket does (`handshake.admitted`), then
    serve it until it closes."""
    async with admitted(ws, auth, sessions, limiter, session_id, token) as admit:
        if admit:
            connection = ChatConnection(ws, sessions, hub, session_id, limiter)
            await connection.run(admit.generation)


class ChatConnection:
    """One client's connection: each request a task that streams its turn's chunks."""

    def __init__(
        self,
        ws: WebSocket,
        sessions: Sessions,
        hub: Hub,
        session_id: str,
        limiter: Limiter | None = None,
    ) -> None:
        self.ws = ws
        self.sessions = sessions
        self.hub = hub
        self.session_id = session_id
        self.limiter = limiter or Limiter(Limits())
        self.requests: dict[str, asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()
        self.generation = 0  # the token generation the connection was opened with

    async def run(self, generation: int = 0) -> None:
        """Serve the client's frames until it goes, or until the session's tokens are
        revoked past `generation` (the one its token has)."""
        self.generation = generation
        watcher = asyncio.create_task(self._close_when_revoked(generation))
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text") or (message.get("bytes") or b"").decode(errors="ignore")
                if not await self.handle(text):
                    await self.ws.close(code=4400, reason="a frame that names no requestId")
                    return
        finally:
            tasks = [watcher, *self.requests.values()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _close_when_revoked(self, generation: int) -> None:
        sub = self.hub.subscribe(self.session_id)
        try:
            while True:
                await sub.wake.wait()
                sub.wake.clear()
                events, sub.inbox = sub.inbox, []
                for event in events:
                    if event.type == REVOKED and event.text and revokes(event.text, generation):
                        await self.ws.close(code=4401, reason="the session's tokens were revoked")
                        return
        finally:
            self.hub.unsubscribe(self.session_id, sub)

    async def handle(self, text: str) -> bool:
        """Act on a client frame; False when it names no request to answer."""
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):  # (nested deeper than the parser goes)
            return False
        request_id = frame.get("requestId") if isinstance(frame, dict) else None
        if not isinstance(request_id, str) or not request_id:
            return False
        kind = frame.get("type")
        if kind == "abort":
            task = self.requests.pop(request_id, None)
            if task is not None:
                task.cancel()
            return True
        refusal = self._refusal(kind, request_id, len(text))
        if refusal is not None:
            await self.send({"type": "error", "requestId": request_id, "errorText": refusal})
            return True
        if kind == "send":
            client = self.ws.client.host if self.ws.client else None
            wait = self.limiter.message(client, self.session_id)
            if wait:
                text = f"too many messages; wait {math.ceil(wait)} s"
                error = {"type": "error", "requestId": request_id, "errorText": text}
                await self.send({**error, "code": "rate_limited"})
                return True
        task = asyncio.create_task(self.answer(request_id, frame))
        self.requests[request_id] = task
        task.add_done_callback(lambda _: self._forget(request_id, task))
        return True

    def _refusal(self, kind: object, request_id: str, size: int) -> str | None:
        if kind not in ("send", "resume"):
            return f"unknown request type {kind!r}"
        if size > MAX_FRAME_BYTES:
            return "the frame is too large"
        if request_id in self.requests:
            return "a request with this requestId is in progress"
        if len(self.requests) >= MAX_REQUESTS:
            return f"more than {MAX_REQUESTS} requests at once"
        return None

    def _forget(self, request_id: str, task: asyncio.Task[None]) -> None:
        if self.requests.get(request_id) is task:
            del self.requests[request_id]

    async def answer(self, request_id: str, frame: dict[str, Any]) -> None:
        """Stream the request's turn; `error` when there is none to stream."""
        ids = {"requestId": request_id}
        try:
            if (await self.sessions.access(self.session_id)).token_generation > self.generation:
                # Revoked, and the notice missed (a listener reconnecting): refused all the same.
                await self.ws.close(code=4401, reason="the session's tokens were revoked")
                return
            if frame["type"] == "send":
                stream: aisdk.TurnStream | None = await aisdk.submit(
                    self.sessions, self.session_id, frame
                )
            else:
                stream = await aisdk.active_turn(self.sessions, self.session_id)
            if stream is None:
                await self.send({"type": "no-active", **ids})
                return
            last = frame.get("lastSequence")
            await self.stream(ids, stream, last if isinstance(last, int) else -1)
        except Gone:
            return
        except (ValueError, ConfigurationError, PayloadTooLarge, UnknownSession) as exc:
            with contextlib.suppress(Gone):
                await self.send({"type": "error", **ids, "errorText": str(exc)})
        except Exception:  # a bug or the database: the client is told, the log has the rest
            log.exception("the AI SDK stream of %s failed", self.session_id)
            with contextlib.suppress(Gone):
                await self.send({"type": "error", **ids, "errorText": "the stream failed"})

    async def stream(self, ids: dict[str, str], stream: aisdk.TurnStream, last: int) -> None:
        await self.send({"type": "start", **ids})
        sequence = 0
        chunks = aisdk.turn_chunks(self.sessions, self.hub, self.session_id, stream)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if chunk is None:  # a quiet spell; the WebSocket needs no keep-alive
                    continue
                if sequence > last:
                    await self.send({"type": "chunk", **ids, "sequence": sequence, "chunk": chunk})
                sequence += 1
        await self.send({"type": "end", **ids})

    async def send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            try:
                await self.ws.send_text(json.dumps(frame))
            except Exception as exc:  # closed, by either side
                raise Gone from exc


class Gone(Exception):
    """The connection closed: nothing more can be sent."""
