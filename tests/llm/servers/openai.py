"""A server speaking OpenAI's Chat Completions API: `POST /v1/chat/completions`, plain JSON
or SSE `data: {chat.completion.chunk}` lines, a final usage chunk with no choices (when the
client asks for `stream_options.include_usage`) and `data: [DONE]`."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .base import Reply, Script, sse, streaming

_ERRORS: dict[str, tuple[int, str, str | None, str]] = {
    "rate_limited": (
        429,
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3, Used 3.",
    ),
    "server_error": (500, "server_error", None, "The server had an error processing your request."),
    "unavailable": (503, "server_error", None, "The engine is currently overloaded."),
    "overloaded": (503, "server_error", None, "The engine is currently overloaded."),
    "context_length": (
        400,
        "invalid_request_error",
        "context_length_exceeded",
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 130000 tokens. Please reduce the length of the messages.",
    ),
    "unauthorized": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided"),
    "not_found": (
        404,
        "invalid_request_error",
        "model_not_found",
        "The model `gpt-nope` does not exist or you do not have access to it.",
    ),
    "bad_request": (400, "invalid_request_error", None, "'messages' is a required property"),
}
_FINISH = {"end": "stop", "max_tokens": "length", "filtered": "content_filter"}


def _usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cache_read_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reply.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls and reply.stop == "end" else _FINISH[reply.stop]


def _completion(reply: Reply, model: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in reply.tool_calls
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(reply),
            }
        ],
        "usage": _usage(reply),
        "system_fingerprint": "fp_test",
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> str:
    chunk = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_test",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return sse(None, chunk)


def _chunks(reply: Reply, model: str, include_usage: bool) -> tuple[list[str], bool]:
    lines = [_chunk(model, {"role": "assistant", "content": "", "refusal": None})]
    for number, piece in enumerate(reply.pieces()):
        if number == reply.break_after and reply.error == "malformed_stream":
            return [*lines, 'data: {"id": "chatcmpl-test", "choices": [{\n\n'], False
        if number == reply.break_after and reply.error == "cut_stream":
            return lines, True
        if number == reply.break_after and reply.error == "stream_error":
            error = {"error": {"message": "The server had an error.", "type": "server_error"}}
            return [*lines, sse(None, error)], False
        lines.append(_chunk(model, {"content": piece}))
    for index, call in enumerate(reply.tool_calls):
        arguments = json.dumps(call.arguments)
        half = len(arguments) // 2
        first = {"index": index, "id": call.id, "type": "function"}
        first["function"] = {"name": call.name, "arguments": arguments[:half]}
        lines.append(_chunk(model, {"tool_calls": [first]}))
        rest = {"index": index, "function": {"arguments": arguments[half:]}}
        lines.append(_chunk(model, {"tool_calls": [rest]}))
    lines.append(_chunk(model, {}, _finish_reason(reply)))
    if include_usage and reply.send_usage:
        usage_chunk = {
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [],
            "usage": _usage(reply),
        }
        lines.append(sse(None, usage_chunk))
    lines.append("data: [DONE]\n\n")
    return lines, False


def create_app(script: Script) -> Starlette:
    async def completions(request: Request) -> Response:
        recorded = await script.record(request)
        reply = script.next()
        await reply.wait()
        if reply.error in _ERRORS:
            status, error_type, code, message = _ERRORS[reply.error]
            body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
            headers = (
                {"retry-after": reply.retry_after} if status == 429 and reply.retry_after else {}
            )
            return JSONResponse(body, status_code=status, headers=headers)
        model = reply.model or recorded.body["model"]
        if not recorded.body.get("stream"):
            return JSONResponse(_completion(reply, model))
        include_usage = bool((recorded.body.get("stream_options") or {}).get("include_usage"))
        lines, cut = _chunks(reply, model, include_usage)
        return streaming(lines, media_type="text/event-stream", abort_at_end=cut)

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
