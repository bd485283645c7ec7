"""A session's event streams: Server-Sent Events of its log, the Vercel AI SDK's UI message
streams (SSE and WebSocket), and the session's own WebSocket (ws/)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, WebSocket
from fastapi.responses import Response, StreamingResponse

from ...sessions import Sessions, UnknownSession
from ...sessions.events import Committed
from .. import aisdk, aisdk_ws
from ..access import RequestAccess
from ..answers import event_stream, message_refusals, refusals
from ..auth import Auth
from ..handshake import admitted
from ..hub import Hub
from ..throttle import Throttle
from ..ws import MAX_SEQ, Connection

SSE_KEEP_ALIVE_S = 15.0


def stream_routes(
    sessions: Sessions, hub: Hub, auth: Auth, access: RequestAccess, throttle: Throttle
) -> APIRouter:
    router = APIRouter()
    limiter = throttle.limiter

    def ui_message_stream(session_id: str, stream: aisdk.TurnStream) -> StreamingResponse:
        chunks = aisdk.turn_chunks(sessions, hub, session_id, stream)
        return StreamingResponse(
            throttle.counted(session_id, aisdk.sse(chunks)),
            media_type="text/event-stream",
            headers=aisdk.HEADERS,
        )

    @router.get(
        "/v1/sessions/{session_id}/events",
        response_class=StreamingResponse,
        responses={
            **event_stream("The session's events, then each as it is logged"),
            **refusals(401, 403, 404, 429),
        },
    )
    async def sse(
        session_id: Annotated[str, Depends(access.session_access)],
        after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        start = after
        if last_event_id and last_event_id.strip():
            start = _last_event_id(last_event_id)
        throttle.stream_allowed(session_id)
        return StreamingResponse(
            throttle.counted(session_id, _sse_stream(sessions, hub, session_id, start)),
            media_type="text/event-stream",
        )

    @router.post(
        "/v1/sessions/{session_id}/ai-sdk",
        response_class=StreamingResponse,
        responses={
            **event_stream("The turn as the AI SDK's UI message stream"),
            **refusals(401, 403, 404, 413, 422, 429),
        },
        openapi_extra={"requestBody": aisdk.REQUEST_BODY},
    )
    async def ai_sdk_chat(
        request: Request, session_id: Annotated[str, Depends(access.session_access)]
    ) -> StreamingResponse:
        """A turn for the Vercel AI SDK's `useChat`: its request body in, the UI message
        stream protocol out (see aisdk/)."""
        throttle.message_allowed(request, session_id)
        throttle.stream_allowed(session_id)
        try:
            with message_refusals():
                stream = await aisdk.submit(sessions, session_id, await request.json())
        # Not JSON (or nested deeper than the parser goes), no user message:
        except (ValueError, RecursionError) as exc:
            raise HTTPException(422, str(exc)) from None
        return ui_message_stream(session_id, stream)

    # `DefaultChatTransport.reconnectToStream` asks `${api}/${chatId}/stream`.
    @router.get(
        "/v1/sessions/{session_id}/ai-sdk/stream",
        response_class=StreamingResponse,
        responses={
            **event_stream("The active turn's UI message stream from its start"),
            204: {"description": "No turn is active"},
            **refusals(401, 403, 404, 429),
        },
    )
    @router.get("/v1/sessions/{session_id}/ai-sdk/{chat_id}/stream", include_in_schema=False)
    async def ai_sdk_resume(
        session_id: Annotated[str, Depends(access.session_access)],
    ) -> Response:
        """The active turn's UI message stream from its start (204: no turn is active)."""
        throttle.stream_allowed(session_id)
        try:
            stream = await aisdk.active_turn(sessions, session_id)
        except UnknownSession as exc:
            raise HTTPException(404, str(exc)) from None
        if stream is None:
            return Response(status_code=204)
        return ui_message_stream(session_id, stream)

    @router.websocket("/v1/sessions/{session_id}/ai-sdk/ws")
    async def ai_sdk_websocket(ws: WebSocket, session_id: str, token: str | None = None) -> None:
        """`WebSocketChatTransport`'s protocol (see aisdk_ws.py)."""
        await aisdk_ws.serve(ws, sessions, hub, auth, limiter, session_id, token)

    @router.websocket("/v1/sessions/{session_id}/ws")
    async def websocket(ws: WebSocket, session_id: str, token: str | None = None) -> None:
        async with admitted(ws, auth, sessions, limiter, session_id, token) as admit:
            if admit:
                await Connection(ws, sessions, hub, session_id, limiter, admit.generation).run()

    return router


def _last_event_id(value: str) -> int:
    """The seq a reconnecting EventSource sends back: one this server gave, so a whole
    number in a bigint's range; anything else is refused (422), never read as one."""
    value = value.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= MAX_SEQ):
        detail = [
            {
                "loc": ["header", "last-event-id"],
                "msg": f"a whole number 0..{MAX_SEQ}",
                "type": "value_error",
            }
        ]
        raise HTTPException(422, detail)
    return int(value)


async def _sse_stream(
    sessions: Sessions, hub: Hub, session_id: str, after: int
) -> AsyncIterator[str]:
    sub = hub.subscribe(session_id)
    cursor = after
    try:
        while True:
            events = [
                Committed(session_id, e.seq, e.type, json.dumps(e.frame()))
                for e in await sessions.read(session_id, cursor)
            ]
            while events:
                for event in events:
                    cursor = event.seq
                    yield f"id: {cursor}\nevent: {event.type}\ndata: {event.text}\n\n"
                events, gap = sub.take(cursor)
                if gap:
                    break
            sub.wake.clear()
            try:
                await asyncio.wait_for(sub.wake.wait(), SSE_KEEP_ALIVE_S)
            except TimeoutError:  # idle: a comment keeps proxies from closing the stream
                yield ": keep-alive\n\n"
    finally:
        hub.unsubscribe(session_id, sub)
