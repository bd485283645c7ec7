"""The Vercel AI SDK's UI message stream protocol (`ai` 5 and later), so apps built with
`useChat` talk to a session without an adapter. One turn is one assistant message: its session
events become UI message chunks here, in one place (`UIMessageStream`), and both transports
send them: SSE for `DefaultChatTransport` (app.py's routes) and a WebSocket for
`WebSocketChatTransport` (aisdk_ws.py). Every stream is read from the session's event log, so
a client that dropped gets the active turn's stream again, from its start (docs/protocol.md,
"Vercel AI SDK")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..sessions import Sessions
from ..sessions.events import SessionEvent
from .hub import Hub

Chunk = dict[str, Any]

HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "cache-control": "no-cache"}
READ_PAGE = 500  # events per read of the log
IDLE_S = 15.0  # a stream that waits this long for its turn sends a keep-alive
TURN_ENDS = frozenset({"message.end", "message.error", "message.cancelled"})
# Events of a turn that tell, not answer: sent as transient data parts (`data-<name>`), with
# the event's `type` in `data.kind` where one name covers several.
NOTICES = {
    "model.fallback": "fallback",
    "budget.update": "budget",
    "budget.capped": "budget",
    "budget.exceeded": "budget",
    "budget.overshoot": "budget",
}
DECLINED = "the call was not approved"  # a declined call's result (agents/turn.py)


# -- requests ---------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class TurnStream:
    """What to stream: `turn_id`'s events after `after` (a seq of the session's log);
    `resumed`: the turn goes on after a tool approval, in the message the client has."""

    turn_id: str
    after: int
    resumed: bool = False


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
            ended.update(_turns_of(event.frame()))
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


def _turns_of(frame: dict[str, Any]) -> list[str]:
    if frame["type"] == "message.cancelled":
        return [str(t) for t in frame.get("turns") or []]
    return [str(frame.get("turn_id"))]


# -- session events -> UI message chunks ------------------------------------------------------


class UIMessageStream:
    """One turn's session events as UI message chunks (types `UIMessageChunk` of the `ai`
    package): `start` (the message id is the turn id); for each model round a step
    (`start-step` … `finish-step`) with its sources (`source-url`, or `source-document` for
    a source without a URL), text (`text-start`, `text-delta`…, `text-end`) and tool calls
    (`tool-input-available`, then `tool-output-available` or `tool-output-error`); at the
    end `message-metadata` (model, usage, cost, cache mark) and `finish` with the same
    metadata, or `error` for a failed turn, or `abort` for a cancelled one.

    The log cannot tell the rounds apart; text or a call that follows a tool result begins
    the next step (so two calls of one round show as two steps). Each step's text is a part
    of its own, without the blank line the server puts between two rounds' texts: the parts
    joined by a blank line are the answer's text (`message.end`'s). A tool call waiting for
    approval (`tool-approval-request`) ends the stream once the log has nothing after it
    (`pause`): the client's answer continues the message in a new request, as the AI SDK
    does it; a replay shows an answered one with `tool-approval-response`."""

    def __init__(self, stream: TurnStream) -> None:
        self.turn_id = stream.turn_id
        self.over = False
        self._step = stream.resumed  # a step is open (a resumed message is in one)
        self._step_done = False  # the open step has a tool result: next is a new round
        self._kept: list[Chunk] = []  # the step's chunks a restart keeps (sources, calls)
        self._text: str | None = None  # the open text part's id
        self._step_text = False  # the step shows text of an answer the model may restart
        self._texts = 0
        self._started = False
        self.waiting: str | None = None  # the call whose approval the log has not answered

    def start(self) -> list[Chunk]:
        return [{"type": "start", "messageId": self.turn_id}]

    def feed(self, frame: dict[str, Any]) -> list[Chunk]:
        """The chunks for the next event of the session's log (none for other turns')."""
        kind = frame["type"]
        if self.over or (
            frame.get("turn_id") != self.turn_id
            and not (kind == "message.cancelled" and self.turn_id in _turns_of(frame))
        ):
            return []
        out: list[Chunk] = []
        if kind == "message.sources":
            self._open_step(out)
            for source in frame.get("sources") or []:
                self._keep(out, _source_chunk(source))
        elif kind == "message.start":
            if self._started:  # a second start: the answer begins again
                self._restart(out)
            self._started = True
            if frame.get("cached"):
                out.append({"type": "message-metadata", "messageMetadata": {"cached": True}})
        elif kind == "message.restart":
            self._restart(out)
        elif kind == "message.delta":
            self._delta(frame["text"], out)
        elif kind in NOTICES:  # useChat's onData gets them; they are not kept in the message
            data = {k: v for k, v in frame.items() if k not in ("type", "seq", "turn_id")}
            data["kind"] = kind
            out.append({"type": f"data-{NOTICES[kind]}", "data": data, "transient": True})
        elif kind.startswith("tool."):
            self._tool(kind, frame, out)
        elif kind in TURN_ENDS:
            self._end(kind, frame, out)
        return out

    def _delta(self, text: str, out: list[Chunk]) -> None:
        if self._text is None:
            # The blank line the server puts between the texts of two rounds: here each
            # round's text is a part of its own.
            text = text.removeprefix("\n\n")
            if not text:
                return
            self._open_step(out)
            self._texts += 1
            self._text = f"text-{self._texts}"
            self._step_text = True
            out.append({"type": "text-start", "id": self._text})
        out.append({"type": "text-delta", "id": self._text, "delta": text})

    def _tool(self, kind: str, frame: dict[str, Any], out: list[Chunk]) -> None:
        call = {"toolCallId": frame.get("call_id")}
        if kind == "tool.call":
            self._open_step(out)
            self._close_text(out)
            self._step_text = False  # the model's answer is whole: it asked for a call
            arguments = frame.get("arguments") or {}
            chunk = {"type": "tool-input-available", **call, "toolName": frame.get("name")}
            self._keep(out, {**chunk, "input": arguments})
        elif kind == "tool.confirm":
            self.waiting = call["toolCallId"]
            out.append({"type": "tool-approval-request", "approvalId": self.waiting, **call})
        elif kind == "tool.result":
            self._step_done = True
            result = frame.get("result")
            error = result.get("error") if isinstance(result, dict) else None
            if self.waiting is not None and self.waiting == call["toolCallId"]:  # answered
                answer = {"approvalId": self.waiting, "approved": error != DECLINED}
                out.append({"type": "tool-approval-response", **answer})
                self.waiting = None
                if error == DECLINED:
                    out.append({"type": "tool-output-denied", **call})
                    return
            if error is not None:
                out.append({"type": "tool-output-error", **call, "errorText": str(error)})
            else:
                output = result.get("result") if isinstance(result, dict) else result
                out.append({"type": "tool-output-available", **call, "output": output})

    def _end(self, kind: str, frame: dict[str, Any], out: list[Chunk]) -> None:
        self._close_step(out)
        self.over = True
        if kind == "message.end":
            meta = metadata(frame)
            out.append({"type": "message-metadata", "messageMetadata": meta})
            out.append({"type": "finish", "finishReason": "stop", "messageMetadata": meta})
        elif kind == "message.error":
            failure = {"code": frame.get("code"), "retryable": bool(frame.get("retryable"))}
            meta = {"turnId": self.turn_id, "error": failure}
            out.append({"type": "message-metadata", "messageMetadata": meta})
            out.append({"type": "error", "errorText": str(frame.get("message") or "")})
        else:
            out.append({"type": "abort", "reason": "cancelled"})

    def pause(self) -> list[Chunk]:
        """The end of a stream that waits for a tool call's approval."""
        out: list[Chunk] = []
        self._close_step(out)
        out.append({"type": "finish", "finishReason": "tool-calls"})
        self.over = True
        return out

    def _open_step(self, out: list[Chunk]) -> None:
        if self._step and self._step_done:
            self._close_step(out)
        if not self._step:
            out.append({"type": "start-step"})
            self._step, self._step_done, self._step_text, self._kept = True, False, False, []

    def _close_text(self, out: list[Chunk]) -> None:
        if self._text is not None:
            out.append({"type": "text-end", "id": self._text})
            self._text = None

    def _close_step(self, out: list[Chunk]) -> None:
        self._close_text(out)
        if self._step:
            out.append({"type": "finish-step"})
            self._step = False

    def _keep(self, out: list[Chunk], chunk: Chunk) -> None:
        out.append(chunk)
        self._kept.append(chunk)

    def _restart(self, out: list[Chunk]) -> None:
        """The model's answer begins again: its text so far goes (`reset-step` drops the
        step's parts), what else the step showed comes back. A step with no text of the
        current round (after a tool result, the new round has shown nothing) keeps all."""
        if self._step and self._step_text:
            out.append({"type": "reset-step"})
            out.extend(self._kept)
            self._text, self._step_text = None, False


def _source_chunk(source: dict[str, Any]) -> Chunk:
    """A passage the answer cites as `[n]`: its id is `n`; where it came from rides in the
    provider metadata (`threadline: {n, source, documentId, page}`)."""
    title = str(source.get("title") or source.get("source") or f"[{source.get('n')}]")
    where = {
        "n": source.get("n"),
        "source": source.get("source"),
        "documentId": source.get("document_id"),
        "page": source.get("page"),
    }
    chunk: Chunk = {"sourceId": str(source.get("n")), "title": title}
    chunk["providerMetadata"] = {"threadline": where}
    if source.get("url"):
        return {"type": "source-url", "url": str(source["url"]), **chunk}
    filename = source.get("source")
    named = {"filename": str(filename)} if filename else {}
    return {"type": "source-document", "mediaType": "text/plain", **chunk, **named}


def metadata(end: dict[str, Any]) -> dict[str, Any]:
    """The answer's message metadata from its `message.end`: `usage` in the shape of the AI
    SDK's `LanguageModelUsage`, `cost` in USD as a decimal string (null: unknown)."""
    usage = end.get("usage") or {}
    given, made, read, wrote, reasoning = (
        int(usage.get(f"{name}_tokens") or 0)
        for name in ("input", "output", "cache_read", "cache_write", "reasoning")
    )
    meta: dict[str, Any] = {
        "turnId": end.get("turn_id"),
        "model": end.get("model"),
        "cost": end.get("cost"),
        "usage": {
            "inputTokens": given,
            "inputTokenDetails": {
                "noCacheTokens": given - read - wrote,
                "cacheReadTokens": read,
                "cacheWriteTokens": wrote,
            },
            "outputTokens": made,
            "outputTokenDetails": {"textTokens": made - reasoning, "reasoningTokens": reasoning},
            "totalTokens": given + made,
        },
    }
    if "cached" in end:  # agents with show_cached=True only (as message.end)
        meta["cached"] = bool(end["cached"])
    if end.get("budget"):
        meta["budget"] = end["budget"]
    return meta


# -- streams ----------------------------------------------------------------------------------


async def turn_chunks(
    sessions: Sessions, hub: Hub, session_id: str, stream: TurnStream
) -> AsyncGenerator[Chunk | None, None]:
    """The turn's UI message chunks until it ends, or waits for a tool call's approval;
    None after a while with nothing to send (a transport may send a keep-alive)."""
    ui = UIMessageStream(stream)
    for chunk in ui.start():
        yield chunk
    quiet_since = time.monotonic()
    events = _events(sessions, hub, session_id, stream.after)
    async with contextlib.aclosing(events):  # unsubscribes at once when the stream stops
        async for frame in events:
            if frame is not None:
                for chunk in ui.feed(frame):
                    yield chunk
                quiet_since = time.monotonic()
            elif ui.waiting is not None:  # the log has all there is: the approval is to come
                for chunk in ui.pause():
                    yield chunk
            elif time.monotonic() - quiet_since >= IDLE_S:
                yield None
                quiet_since = time.monotonic()
            if ui.over:
                return


async def _events(
    sessions: Sessions, hub: Hub, session_id: str, after: int
) -> AsyncGenerator[dict[str, Any] | None, None]:
    """The session's logged events after `after`, as they come (from the hub; from the log
    after a gap or a quiet spell), and None each time it has given all there is so far."""
    sub = hub.subscribe(session_id)
    cursor, read_log = after, True
    try:
        while True:
            sub.wake.clear()
            if read_log:
                events = await sessions.read(session_id, cursor, READ_PAGE)
                for event in events:
                    cursor = event.seq
                    yield event.frame()
                read_log = len(events) == READ_PAGE
                if read_log:
                    continue
            taken, gap = sub.take(cursor)
            for entry in taken:
                cursor = entry.seq
                if entry.text is not None:  # always: `take` stops before one without
                    yield json.loads(entry.text)
            if gap or taken:
                read_log = gap
                continue
            yield None
            try:
                await asyncio.wait_for(sub.wake.wait(), IDLE_S)
            except TimeoutError:
                sub.stale = True
            if sub.stale:  # nothing came for a while: read the log, in case a notice was lost
                sub.stale, read_log = False, True
    finally:
        hub.unsubscribe(session_id, sub)


async def sse(chunks: AsyncGenerator[Chunk | None, None]) -> AsyncIterator[str]:
    """Chunks as Server-Sent Events, ending in `[DONE]`; a comment keeps an idle stream."""
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            yield ": keep-alive\n\n" if chunk is None else f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"
