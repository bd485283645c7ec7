"""A server speaking Ollama's `POST /api/chat`: one JSON object, or NDJSON lines ending with
a `done: true` line that carries `done_reason`, `prompt_eval_count` and `eval_count`."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .base import Reply, Script, streaming

_ERRORS: dict[str, tuple[int, str]] = {
    "rate_limited": (429, "too many requests"),
    "server_error": (500, "llama runner process has terminated: exit status 2"),
    "unavailable": (503, "server busy, please try again.  maximum pending requests exceeded"),
    "overloaded": (503, "server busy, please try again.  maximum pending requests exceeded"),
    "context_length": (400, "the input length exceeds the context length"),
    "unauthorized": (401, "unauthorized"),
    "not_found": (404, 'model "llama-nope" not found, try pulling it first'),
    "bad_request": (400, "invalid message format"),
}
_CREATED = "2025-01-01T00:00:00.000000Z"


def _line(payload: dict[str, Any]) -> str:
    return json.dumps(payload) + "\n"


def _final(reply: Reply, model: str, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": _CREATED,
        "message": message,
        "done": True,
        "done_reason": "length" if reply.stop == "max_tokens" else "stop",
        "total_duration": 1_000_000,
        "load_duration": 1_000,
        "prompt_eval_count": reply.input_tokens,
        "prompt_eval_duration": 1_000,
        "eval_count": reply.output_tokens,
        "eval_duration": 1_000,
    }


def _calls(reply: Reply) -> list[dict[str, Any]]:
    return [{"function": {"name": c.name, "arguments": c.arguments}} for c in reply.tool_calls]


def _lines(reply: Reply, model: str) -> tuple[list[str], bool]:
    lines: list[str] = []
    for number, piece in enumerate(reply.pieces()):
        if number == reply.break_after and reply.error == "malformed_stream":
            return [*lines, '{"model": "' + model + '", "message": {\n'], False
        if number == reply.break_after and reply.error == "cut_stream":
            return lines, True
        if number == reply.break_after and reply.error == "stream_error":
            error = "an error was encountered while running the model: unexpected EOF"
            return [*lines, _line({"error": error})], False
        message: dict[str, Any] = {"role": "assistant", "content": piece}
        lines.append(
            _line({"model": model, "created_at": _CREATED, "message": message, "done": False})
        )
    if reply.tool_calls:
        message = {"role": "assistant", "content": "", "tool_calls": _calls(reply)}
        lines.append(
            _line({"model": model, "created_at": _CREATED, "message": message, "done": False})
        )
    lines.append(_line(_final(reply, model, {"role": "assistant", "content": ""})))
    return lines, False


def create_app(script: Script) -> Starlette:
    async def chat(request: Request) -> Response:
        recorded = await script.record(request)
        reply = script.next()
        await reply.wait()
        if reply.error in _ERRORS:
            status, text = _ERRORS[reply.error]
            headers = (
                {"retry-after": reply.retry_after} if status == 429 and reply.retry_after else {}
            )
            return JSONResponse({"error": text}, status_code=status, headers=headers)
        model = reply.model or recorded.body["model"]
        if recorded.body.get("stream") is False:
            answer: dict[str, Any] = {"role": "assistant", "content": reply.text}
            if reply.tool_calls:
                answer["tool_calls"] = _calls(reply)
            return JSONResponse(_final(reply, model, answer))
        lines, cut = _lines(reply, model)
        return streaming(lines, media_type="application/x-ndjson", abort_at_end=cut)

    return Starlette(routes=[Route("/api/chat", chat, methods=["POST"])])
