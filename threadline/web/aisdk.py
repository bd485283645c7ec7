"""The Vercel AI SDK's UI message stream protocol, so React apps built with `useChat` talk to a
session without an adapter: `POST /v1/sessions/{id}/ai-sdk` takes useChat's request body
(`{messages: [{id, role, parts: [{type: "text", text}]}]}`), sends the last user message as a
turn, and answers with that turn's events as UI message chunks over SSE, ending in `[DONE]`
(after `finish`, or an `error` chunk with the failure's words when the turn fails)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from ..sessions import Sessions
from .hub import Hub

HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "cache-control": "no-cache"}


def last_user_message(body: Any) -> tuple[str, str]:
    """(message id, text) of the last user message in a useChat request body."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        raise ValueError("the body needs a 'messages' list")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            parts = message.get("parts") or []
            text = "".join(
                p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"
            ) or str(message.get("content") or "")
            return str(message.get("id") or ""), text
    raise ValueError("the body has no user message")


def client_id(body: Any, message_id: str) -> str:
    """The session message's client id: the user message's own id (so a resend of a request
    is the same message, answered once), a fresh one when there is none, and a new one per
    `regenerate()` (useChat's `trigger: "regenerate-message"`: the same text asked again for
    a new answer)."""
    if not message_id:
        return os.urandom(8).hex()
    if isinstance(body, dict) and body.get("trigger") == "regenerate-message":
        return f"{message_id[:80]}~{os.urandom(4).hex()}"
    return message_id[:100]


def _chunk(data: dict[str, Any] | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def to_chunks(frame: dict[str, Any], text_id: str) -> list[dict[str, Any]]:
    """The UI message chunks for one session event of the turn."""
    kind = frame["type"]
    if kind == "message.delta":
        return [{"type": "text-delta", "id": text_id, "delta": frame["text"]}]
    if kind == "tool.call":
        return [
            {
                "type": "tool-input-available",
                "toolCallId": frame["call_id"],
                "toolName": frame["name"],
                "input": frame["arguments"],
            }
        ]
    if kind == "tool.result":
        return [
            {
                "type": "tool-output-available",
                "toolCallId": frame["call_id"],
                "output": frame["result"],
            }
        ]
    return []


async def stream_turn(
    sessions: Sessions, hub: Hub, session_id: str, turn_id: str, after_seq: int
) -> AsyncIterator[str]:
    """The turn's events after `after_seq`, as UI message chunks."""
    text_id = f"text-{turn_id.rsplit(':', 1)[-1]}"
    yield _chunk({"type": "start", "messageId": turn_id})
    yield _chunk({"type": "start-step"})
    yield _chunk({"type": "text-start", "id": text_id})
    sub = hub.subscribe(session_id)
    cursor = after_seq
    try:
        while True:
            sub.wake.clear()
            for event in await sessions.read(session_id, cursor):
                cursor = event.seq
                frame = event.frame()
                if (
                    frame.get("turn_id") not in (None, turn_id)
                    and frame["type"] != "message.cancelled"
                ):
                    continue
                for chunk in to_chunks(frame, text_id):
                    yield _chunk(chunk)
                if frame["type"] == "message.end" and frame.get("turn_id") == turn_id:
                    yield _chunk({"type": "text-end", "id": text_id})
                    yield _chunk({"type": "finish-step"})
                    yield _chunk({"type": "finish"})
                    yield _chunk("[DONE]")
                    return
                if frame["type"] == "message.error" and frame.get("turn_id") == turn_id:
                    yield _chunk({"type": "error", "errorText": frame["message"]})
                    yield _chunk("[DONE]")
                    return
                if frame["type"] == "message.cancelled":
                    yield _chunk({"type": "abort"})
                    yield _chunk("[DONE]")
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wake.wait(), 5.0)
    finally:
        hub.unsubscribe(session_id, sub)
