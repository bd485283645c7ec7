"""A server speaking the Gemini API: `POST /v1[beta]/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse` (`data: {candidates, usageMetadata, modelVersion}` events),
with Google's error bodies (`{"error": {"code", "message", "status", "details"}}`)."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .base import Reply, Script, streaming

_ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limited": (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "server_error": (500, "INTERNAL", "An internal error has occurred."),
    "unavailable": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "overloaded": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "context_length": (
        400,
        "INVALID_ARGUMENT",
        "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
    ),
    "unauthorized": (401, "UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
    "not_found": (404, "NOT_FOUND", "models/gemini-nope is not found for API version v1beta."),
    "bad_request": (400, "INVALID_ARGUMENT", "Invalid JSON payload received."),
}
_FINISH = {"end": "STOP", "max_tokens": "MAX_TOKENS", "filtered": "SAFETY"}


def _usage(reply: Reply) -> dict[str, Any]:
    usage = {
        "promptTokenCount": reply.input_tokens,
        "candidatesTokenCount": reply.output_tokens - reply.reasoning_tokens,
        "totalTokenCount": reply.input_tokens + reply.output_tokens,
    }
    if reply.cache_read_tokens:
        usage["cachedContentTokenCount"] = reply.cache_read_tokens
    if reply.reasoning_tokens:
        usage["thoughtsTokenCount"] = reply.reasoning_tokens
    return usage


def _candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return candidate


def _response(
    parts: list[dict[str, Any]], finish: str | None, usage: dict[str, Any], model: str
) -> dict[str, Any]:
    return {
        "candidates": [_candidate(parts, finish)],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": "resp-test",
    }


def _call_parts(reply: Reply) -> list[dict[str, Any]]:
    return [
        {"functionCall": {"id": c.id, "name": c.name, "args": c.arguments}}
        for c in reply.tool_calls
    ]


def _data(payload: Any) -> str:
    return f"data: {json.dumps(payload)}\r\n\r\n"


def _events(reply: Reply, model: str) -> tuple[list[str], bool]:
    running = {"promptTokenCount": reply.input_tokens, "totalTokenCount": reply.input_tokens}
    events: list[str] = []
    pieces = reply.pieces()
    for number, piece in enumerate(pieces):
        if number == reply.break_after and reply.error == "malformed_stream":
            return [*events, 'data: {"candidates": [{"content": \r\n\r\n'], False
        if number == reply.break_after and reply.error == "cut_stream":
            return events, True
        if number == reply.break_after and reply.error == "stream_error":
            error = {
                "error": {
                    "code": 500,
                    "message": "Internal error encountered.",
                    "status": "INTERNAL",
                }
            }
            return [*events, _data(error)], False
        last = number == len(pieces) - 1 and not reply.tool_calls
        finish = _FINISH[reply.stop] if last else None
        usage = _usage(reply) if last else running
        events.append(_data(_response([{"text": piece}], finish, usage, model)))
    if reply.tool_calls or not pieces:
        events.append(
            _data(_response(_call_parts(reply), _FINISH[reply.stop], _usage(reply), model))
        )
    return events, False


def create_app(script: Script) -> Starlette:
    async def generate(request: Request) -> Response:
        await script.record(request)
        reply = script.next()
        await reply.wait()
        if reply.error in _ERRORS:
            status, code, message = _ERRORS[reply.error]
            error: dict[str, Any] = {"code": status, "message": message, "status": code}
            headers: dict[str, str] = {}
            if status == 429 and reply.retry_after:
                error["details"] = [
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{reply.retry_after}s",
                    }
                ]
            return JSONResponse({"error": error}, status_code=status, headers=headers)
        model_path = request.path_params["model_action"]
        model, _, action = model_path.partition(":")
        model = reply.model or model
        if action == "generateContent":
            parts: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
            parts += _call_parts(reply)
            return JSONResponse(_response(parts, _FINISH[reply.stop], _usage(reply), model))
        events, cut = _events(reply, model)
        return streaming(events, media_type="text/event-stream", abort_at_end=cut)

    # The SDK picks the API version (v1 or v1beta); the server answers both.
    return Starlette(
        routes=[
            Route(f"/{version}/models/{{model_action}}", generate, methods=["POST"])
            for version in ("v1", "v1beta")
        ]
    )
