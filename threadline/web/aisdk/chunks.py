"""One turn's session events as the UI message chunks of the Vercel AI SDK's stream
protocol (`UIMessageChunk` of the `ai` package), in one place: both transports send them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Chunk = dict[str, Any]

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


@dataclass(frozen=True)
class TurnStream:
    """What to stream: `turn_id`'s events after `after` (a seq of the session's log);
    `resumed`: the turn goes on after a tool approval, in the message the client has."""

    turn_id: str
    after: int
    resumed: bool = False


def turns_of(frame: dict[str, Any]) -> list[str]:
    """The turns an event of `TURN_ENDS` ends (a cancel may end several)."""
    if frame["type"] == "message.cancelled":
        return [str(t) for t in frame.get("turns") or []]
    return [str(frame.get("turn_id"))]


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
            and not (kind == "message.cancelled" and self.turn_id in turns_of(frame))
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
