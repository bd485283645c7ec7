"""The requests of `useChat` (an HTTP body, or a WebSocket `send` frame): the last user
message becomes a turn of the session, answers to tool approvals go to the waiting turn; and
which turn a reconnecting client's stream is."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from ...sessions import Sessions
from ...sessions.events import SessionEvent
from .chunks import TURN_ENDS, TurnStream, turns_of
from .stream import READ_PAGE

# The body `useChat` posts, as the OpenAPI schema declares it (the route reads the body itself:
# `submit` judges it, and a field this does not name is no reason to refuse one). A part is a
# text part (what the server reads) or any other (one it passes over).
_PART = {
    "anyOf": [
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
        },
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string", "not": {"const": "text"}}},
        },
    ]
}
_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "id": {"type": "string"},
        "role": {"type": "string", "enum": ["user", "assistant", "system"]},
        "parts": {"type": "array", "items": _PART},
    },
}
REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["messages"],
                "properties": {
                    "id": {"type": "string"},
                    "trigger": {"type": "string"},
                    "messages": {"type": "array", "items": _MESSAGE},
                },
            }
        }
    },
}


def last_user_message(body: Any) -> tuple[str, str]:
    """(message id, text) of the last user message in a useChat request body."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        raise ValueError("the body needs a 'messages' list")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            texts = [p.get("text", "") for p in _parts(message) if p.get("type") == "text"]
            if not all(isinstance(text, str) for text in texts):
                raise ValueError("a text part's 'text' must be a string")
            return str(message.get("id") or ""), "".join(texts) or str(message.get("content") or "")
    raise ValueError("the body has no user message")


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A message's parts that are objects (a body whose `parts` is no list is refused)."""
    parts = message.get("parts") or []
    if not isinstance(parts, list):
        raise ValueError("a message's 'parts' must be a list")
    return [part for part in parts if isinstance(part, dict)]


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


async def submit(sessions: Sessions, session_id: str, body: Any) -> TurnStream:
    """Act on a useChat request (an HTTP body or a WebSocket `send` frame): its last user
    message becomes a turn, or, when it ends with the answers to tool approvals, those go to
    the waiting turn. Raises ValueError for a body that is neither, and what
    `Sessions.send` raises."""
    approvals = _approvals(body)
    if approvals is not None:
        return await _approve(sessions, session_id, *approvals)
    message_id, text = last_user_message(body)
    info = await sessions.get(session_id)
    seq, created = await sessions.send(session_id, text, client_id(body, message_id))
    # A resend of a message already sent (useChat retrying a request that broke) streams
    # that message's turn again, from its first event: the log has it all.
    return TurnStream(f"turn:{session_id}:{seq}", info.event_seq if created else 0)


def _approvals(body: Any) -> tuple[str, dict[str, bool]] | None:
    """(turn id, {call id: approved}) when the last message is an assistant message with
    answered approval requests (`addToolApprovalResponse`), else None."""
    messages = body.get("messages") if isinstance(body, dict) else None
    last = messages[-1] if isinstance(messages, list) and messages else None
    if not isinstance(last, dict) or last.get("role") != "assistant":
        return None
    answers = {
        str(part.get("toolCallId")): bool(part["approval"].get("approved"))
        for part in _parts(last)
        if part.get("state") == "approval-responded" and isinstance(part.get("approval"), dict)
    }
    return (str(last.get("id") or ""), answers) if answers else None


async def _approve(
    sessions: Sessions, session_id: str, turn_id: str, answers: dict[str, bool]
) -> TurnStream:
    if not turn_id.startswith(f"turn:{session_id}:"):
        raise ValueError("the approved message is not an answer of this session")
    asked = None  # the first of the answered calls' approval requests
    async for event in _newest_first(sessions, session_id):
        data = event.data
        if event.type == "tool.confirm" and data.get("turn_id") == turn_id:
            if data.get("call_id") in answers:
                asked = event.seq
        elif event.type == "message.user" and turn_id == f"turn:{session_id}:{data['message_seq']}":
            break
    if asked is None:
        raise ValueError("no tool call of that answer waits for approval")
    for call_id, approved in answers.items():
        await sessions.confirm(session_id, call_id, approved)
    return TurnStream(turn_id, asked, resumed=True)


async def active_turn(sessions: Sessions, session_id: str) -> TurnStream | None:
    """The turn of the session's last user message, from its start, while the log has no
    end for it (None: no turn in progress). Turns of a session run one at a time, in order,
    so no earlier one is still running."""
    ended: set[str] = set()
    async for event in _newest_first(sessions, session_id):
        if event.type in TURN_ENDS:
            ended.update(turns_of(event.frame()))
        elif event.type == "message.user":
            turn_id = f"turn:{session_id}:{event.data['message_seq']}"
            return None if turn_id in ended else TurnStream(turn_id, event.seq)
    return None


async def _newest_first(sessions: Sessions, session_id: str) -> AsyncIterator[SessionEvent]:
    """The session's logged events, the newest first, a page at a time."""
    top = (await sessions.get(session_id)).event_seq
    while top > 0:
        after = max(0, top - READ_PAGE)
        for event in reversed(await sessions.read(session_id, after, top - after)):
            yield event
        top = after
