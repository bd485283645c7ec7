"""A server speaking Anthropic's Messages API: `POST /v1/messages`, plain JSON or SSE
(message_start, content_block_start/delta/stop, message_delta, message_stop, ping, error)."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .base import Reply, Script, sse, streaming

_ERRORS: dict[str, tuple[int, str, str]] = {
    "rate_limited": (429, "rate_limit_error", "Number of request tokens has exceeded your limit"),
    "server_error": (500, "api_error", "Internal server error"),
    "unavailable": (503, "api_error", "Service temporarily unavailable"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "context_length": (
        400,
        "invalid_request_error",
        "prompt is too long: 208310 tokens > 200000 maximum",
    ),
    "unauthorized": (401, "authentication_error", "invalid x-api-key"),
    "not_found": (404, "not_found_error", "model: claude-nope"),
    "bad_request": (400, "invalid_request_error", "messages: Field required"),
}
_STOP = {"end": "end_turn", "max_tokens": "max_tokens", "filtered": "refusal"}


def _usage(reply: Reply) -> dict[str, int]:
    uncached = reply.input_tokens - reply.cache_read_tokens - reply.cache_write_tokens
    return {
        "input_tokens": uncached,
        "cache_creation_input_tokens": reply.cache_write_tokens,
        "cache_read_input_tokens": reply.cache_read_tokens,
        "output_tokens": reply.output_tokens,
    }


def _error_body(kind: str) -> tuple[int, dict[str, Any]]:
    status, error_type, message = _ERRORS[kind]
    body = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_test",
    }
    return status, body


def _stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool_calls and reply.stop == "end" else _STOP[reply.stop]


def _message(reply: Reply, model: str) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    for call in reply.tool_calls:
        content.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        )
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _stop_reason(reply),
        "stop_sequence": None,
        "usage": _usage(reply),
    }


def _events(reply: Reply, model: str) -> tuple[list[str], bool]:
    start = _message(reply, model) | {"content": [], "stop_reason": None}
    start["usage"] = _usage(reply) | {"output_tokens": 1}
    events = [sse("message_start", {"type": "message_start", "message": start})]
    events.append(sse("ping", {"type": "ping"}))
    index = 0
    if reply.text:
        block = {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        }
        events.append(sse("content_block_start", block))
        for number, piece in enumerate(reply.pieces()):
            if number == reply.break_after and reply.error in (
                "malformed_stream",
                "cut_stream",
                "stream_error",
            ):
                return _broken(events, reply), reply.error == "cut_stream"
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            events.append(sse("content_block_delta", delta))
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    for call in reply.tool_calls:
        tool = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events.append(
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": tool},
            )
        )
        arguments = json.dumps(call.arguments)
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            delta = {"type": "input_json_delta", "partial_json": part}
            events.append(
                sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
        "usage": {"output_tokens": reply.output_tokens},
    }
    events.append(sse("message_delta", delta))
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events, False


def _broken(events: list[str], reply: Reply) -> list[str]:
    if reply.error == "malformed_stream":
        head = 'event: content_block_delta\ndata: {"type": "content_block_delta", '
        events.append(head + '"index": 0, "delta": {\n\n')
    elif reply.error == "stream_error":
        events.append(
            sse(
                "error",
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            )
        )
    return events


def create_app(script: Script) -> Starlette:
    async def messages(request: Request) -> Response:
        recorded = await script.record(request)
        reply = script.next()
        await reply.wait()
        if reply.error in _ERRORS:
            status, body = _error_body(reply.error)
            headers = (
                {"retry-after": reply.retry_after} if status == 429 and reply.retry_after else {}
            )
            return JSONResponse(body, status_code=status, headers=headers)
        model = reply.model or recorded.body["model"]
        if not recorded.body.get("stream"):
            return JSONResponse(_message(reply, model))
        events, cut = _events(reply, model)
        return streaming(events, media_type="text/event-stream", abort_at_end=cut)

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
