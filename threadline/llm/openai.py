"""OpenAI's Chat Completions API through the official `openai` SDK.

Streams ask for `stream_options={"include_usage": True}`, so the last chunk (with no
choices) carries the usage. `prompt_tokens` already includes the cached tokens and
`completion_tokens` the reasoning tokens, which is threadline's convention. A server that
ignores `include_usage` (some OpenAI-compatible ones do) gets an estimated usage and a
warning. A `content_filter` finish or a refusal raises `ContentFiltered`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from .errors import (
    AuthenticationFailed,
    ContentFiltered,
    ContextWindowExceeded,
    LLMError,
    ProviderNotInstalled,
    RateLimited,
    ServerError,
    StreamInterrupted,
    error_for_status,
    mentions_context_limit,
    parse_retry_after,
    transport_error,
)
from .events import (
    END_TURN,
    MAX_TOKENS,
    TOOL_USE,
    Response,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from .messages import Message, ToolCall, ToolDef, parse_arguments
from .model import Model, raise_mapped, resolve_api_key
from .options import CallOptions
from .options import settings_of as _settings
from .tokens import estimate_messages, estimate_tokens

try:
    import openai
    from openai.types import CompletionUsage
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageFunctionToolCall
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ProviderNotInstalled("openai", "openai") from exc

__all__ = ["OpenAIModel", "map_error"]

log = logging.getLogger(__name__)

PROVIDER = "openai"
_FINISH_REASONS = {"stop": END_TURN, "length": MAX_TOKENS, "tool_calls": TOOL_USE}
_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length"}


def map_error(
    exc: Exception, *, partial_text: str = "", in_stream: bool = False
) -> LLMError | None:
    """The LLMError for an exception of the openai SDK (None if it is not one)."""
    if isinstance(exc, LLMError):
        exc.partial_text = exc.partial_text or partial_text
        return exc
    if isinstance(exc, openai.APIError) and not isinstance(exc, openai.APIConnectionError):
        body = exc.body if isinstance(exc.body, Mapping) else {}
        message = str(body.get("message") or exc.message)
        common: dict[str, Any] = {"provider": PROVIDER, "partial_text": partial_text}
        if not isinstance(exc, openai.APIStatusError):  # an error object inside a stream
            if exc.type == "server_error":
                return ServerError(message, **common)
            return StreamInterrupted(f"stream error: {message}", **common)
        status = exc.status_code
        if exc.code in _CONTEXT_CODES or (status == 400 and mentions_context_limit(message)):
            return ContextWindowExceeded(message, status=status, **common)
        if status == 429:
            retry_after = parse_retry_after(dict(exc.response.headers))
            return RateLimited(message, status=status, retry_after=retry_after, **common)
        if exc.code == "invalid_api_key":
            return AuthenticationFailed(message, status=status, **common)
        return error_for_status(status, message, provider=PROVIDER, partial_text=partial_text)
    if isinstance(exc, ValueError) and in_stream:  # a chunk that is not JSON
        return StreamInterrupted(
            f"unreadable stream chunk: {exc}", provider=PROVIDER, partial_text=partial_text
        )
    return transport_error(exc, provider=PROVIDER, partial_text=partial_text, in_stream=in_stream)


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": _json(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), ensure_ascii=False)


def _usage(usage: CompletionUsage) -> Usage:
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    return Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        cache_read_tokens=(prompt_details.cached_tokens or 0) if prompt_details else 0,
        reasoning_tokens=(completion_details.reasoning_tokens or 0) if completion_details else 0,
    )


def _stop_reason(reason: str | None, refusal: str | None, text: str) -> str:
    if reason == "content_filter" or refusal:
        raise ContentFiltered(
            refusal or "the answer was blocked by the content filter",
            provider=PROVIDER,
            partial_text=text,
        )
    return _FINISH_REASONS.get(reason or "stop", reason or END_TURN)


class _StreamState:
    """Turns `chat.completion.chunk`s into threadline events."""

    def __init__(self, fallback_usage: Usage) -> None:
        self.text = ""
        self.refusal = ""
        self.model = ""
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self._fallback_usage = fallback_usage

    def feed(self, chunk: ChatCompletionChunk) -> Iterator[StreamEvent]:
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = _usage(chunk.usage)
            yield UsageEvent(self.usage)
        for choice in chunk.choices[:1]:
            delta = choice.delta
            if delta.content:
                self.text += delta.content
                yield TextDelta(delta.content)
            if delta.refusal:
                self.refusal += delta.refusal
            for call in delta.tool_calls or ():
                function = call.function
                yield ToolCallDelta(
                    call.index,
                    call.id,
                    function.name if function else None,
                    (function.arguments or "") if function else "",
                )
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def finish(self) -> StreamEnd:
        if self.finish_reason is None:
            raise StreamInterrupted(
                "the stream ended without a finish_reason",
                provider=PROVIDER,
                partial_text=self.text,
            )
        stop_reason = _stop_reason(self.finish_reason, self.refusal, self.text)
        usage = self.usage
        if usage is None:
            log.warning("%s sent no usage for a stream; recording an estimate", self.model)
            usage = Usage(
                input_tokens=self._fallback_usage.input_tokens,
                output_tokens=estimate_tokens(self.text),
            )
        return StreamEnd(stop_reason, usage, self.model)


class OpenAIModel(Model):
    """An OpenAI chat model, e.g. `OpenAIModel("gpt-4o-mini")`.

    Key from `api_key` or OPENAI_API_KEY; endpoint from `base_url` or OPENAI_BASE_URL.
    """

    provider = PROVIDER

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_retries: int = 0,
        context_window: int | None = None,
    ) -> None:
        super().__init__(name, context_window=context_window)
        options: dict[str, Any] = {}
        if timeout is not None:
            options["timeout"] = timeout
        self._client = openai.AsyncOpenAI(
            api_key=resolve_api_key(PROVIDER, api_key),
            base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
            max_retries=max_retries,
            **options,
        )

    def _params(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDef],
        max_tokens: int,
        temperature: float | None,
        stop: Sequence[str] | None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.name,
            "messages": [_message(m) for m in messages],
            "max_completion_tokens": max_tokens,
        }
        if tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": dict(t.parameters),
                    },
                }
                for t in tools
            ]
        if temperature is not None:
            params["temperature"] = temperature
        if stop:
            params["stop"] = list(stop)
        return params

    async def _request(self, messages: Sequence[Message], options: CallOptions) -> Response:
        tools, max_tokens, temperature, stop = _settings(options)
        params = self._params(messages, tools, max_tokens, temperature, stop)
        try:
            completion = await self._client.chat.completions.create(**params, stream=False)
        except Exception as exc:
            raise_mapped(exc, map_error(exc))
        if not completion.choices:
            raise StreamInterrupted("the completion has no choices", provider=PROVIDER)
        choice = completion.choices[0]
        text = choice.message.content or ""
        calls = tuple(
            ToolCall(c.id, c.function.name, parse_arguments(c.function.arguments))
            for c in choice.message.tool_calls or ()
            if isinstance(c, ChatCompletionMessageFunctionToolCall)
        )
        stop_reason = _stop_reason(choice.finish_reason, choice.message.refusal, text)
        if completion.usage is not None:
            usage = _usage(completion.usage)
        else:
            usage = Usage(estimate_messages(messages, tools), estimate_tokens(text))
        return Response(text, calls, usage, stop_reason, completion.model, PROVIDER)

    async def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[StreamEvent]:
        tools, max_tokens, temperature, stop = _settings(options)
        params = self._params(messages, tools, max_tokens, temperature, stop)
        try:
            raw = await self._client.chat.completions.create(
                **params, stream=True, stream_options={"include_usage": True}
            )
        except Exception as exc:
            raise_mapped(exc, map_error(exc))
        state = _StreamState(Usage(input_tokens=estimate_messages(messages, tools)))
        started = False
        try:
            async for chunk in raw:
                started = True
                for event in state.feed(chunk):
                    yield event
            yield state.finish()
        except Exception as exc:
            raise_mapped(exc, map_error(exc, partial_text=state.text, in_stream=started))
        finally:
            await raw.close()

    async def aclose(self) -> None:
        await self._client.close()
