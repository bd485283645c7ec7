"""Anthropic's Messages API through the official `anthropic` SDK.

System messages go to `system=`; tool results become `tool_result` blocks in a user turn.
`temperature`, which the current SDK no longer lists, is sent as an extra body field.
Anthropic reports `input_tokens` without cached tokens, so `Usage.input_tokens` adds
`cache_read_input_tokens` and `cache_creation_input_tokens` back (genai-prices' convention).
A `refusal` stop reason raises `ContentFiltered`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from .errors import (
    AuthenticationFailed,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    LLMError,
    Overloaded,
    ProviderNotInstalled,
    RateLimited,
    ServerError,
    StreamInterrupted,
    Timeout,
    UnknownModel,
    error_for_status,
    mentions_context_limit,
    parse_retry_after,
    transport_error,
)
from .events import (
    END_TURN,
    MAX_TOKENS,
    STOP_SEQUENCE,
    TOOL_USE,
    Response,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    UsageEvent,
)
from .messages import Message, ToolCall, ToolDef
from .model import Model, raise_mapped, resolve_api_key
from .options import CallOptions
from .options import settings_of as _settings

try:
    import anthropic
    from anthropic import types as atypes
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ProviderNotInstalled("anthropic", "anthropic") from exc

__all__ = ["AnthropicModel", "map_error"]

PROVIDER = "anthropic"
_STOP_REASONS = {
    "end_turn": END_TURN,
    "max_tokens": MAX_TOKENS,
    "stop_sequence": STOP_SEQUENCE,
    "tool_use": TOOL_USE,
    "pause_turn": END_TURN,
}
_ERROR_TYPES: dict[str, type[LLMError]] = {
    "rate_limit_error": RateLimited,
    "overloaded_error": Overloaded,
    "authentication_error": AuthenticationFailed,
    "permission_error": AuthenticationFailed,
    "billing_error": AuthenticationFailed,
    "timeout_error": Timeout,
    "not_found_error": UnknownModel,
}


def map_error(
    exc: Exception, *, partial_text: str = "", in_stream: bool = False
) -> LLMError | None:
    """The LLMError for an exception of the anthropic SDK (None if it is not one)."""
    if isinstance(exc, LLMError):
        exc.partial_text = exc.partial_text or partial_text
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        body_type: str = exc.type or ""
        message = exc.api_message or str(exc)
        # An `event: error` inside a 200 stream carries the error only in its body.
        status = exc.status_code if exc.status_code >= 400 else None
        common: dict[str, Any] = {
            "provider": PROVIDER,
            "status": status,
            "partial_text": partial_text,
        }
        if body_type == "rate_limit_error" or status == 429:
            retry_after = parse_retry_after(dict(exc.response.headers))
            return RateLimited(message, retry_after=retry_after, **common)
        if body_type == "invalid_request_error" or body_type == "request_too_large":
            cls = ContextWindowExceeded if mentions_context_limit(message) else InvalidRequest
            return cls(message, **common)
        if body_type in _ERROR_TYPES:
            return _ERROR_TYPES[body_type](message, **common)
        if status is not None:
            return error_for_status(status, message, provider=PROVIDER, partial_text=partial_text)
        if body_type == "api_error":
            return ServerError(message, **common)
        return StreamInterrupted(f"stream error: {message}", **common)
    if isinstance(exc, ValueError) and in_stream:  # a chunk that is not JSON
        return StreamInterrupted(
            f"unreadable stream chunk: {exc}", provider=PROVIDER, partial_text=partial_text
        )
    return transport_error(exc, provider=PROVIDER, partial_text=partial_text, in_stream=in_stream)


def _user_blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content,
            }
        ]
    return [{"type": "text", "text": message.content}]


def _assistant_blocks(message: Message) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
        )
    return blocks


def to_anthropic(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """(system prompt, messages); consecutive turns of one role are merged into one."""
    system = "\n\n".join(m.content for m in messages if m.role == "system") or None
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _assistant_blocks(message) if role == "assistant" else _user_blocks(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _usage(usage: atypes.Usage | atypes.MessageDeltaUsage, start: Usage | None = None) -> Usage:
    """Usage from a message's or a message_delta's counts; `start` fills what a delta omits."""
    base = start or Usage()
    read = usage.cache_read_input_tokens
    write = usage.cache_creation_input_tokens
    uncached = usage.input_tokens
    cache_read = base.cache_read_tokens if read is None else read
    cache_write = base.cache_write_tokens if write is None else write
    input_tokens = base.input_tokens if uncached is None else uncached + cache_read + cache_write
    return Usage(
        input_tokens=input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )


def _stop_reason(reason: str | None, text: str) -> str:
    if reason == "refusal":
        raise ContentFiltered("the model refused to answer", provider=PROVIDER, partial_text=text)
    return _STOP_REASONS.get(reason or "end_turn", reason or END_TURN)


class _StreamState:
    """Turns the raw server-sent events of one stream into threadline events."""

    def __init__(self) -> None:
        self.text = ""
        self.model = ""
        self.usage = Usage()
        self.stop_reason: str | None = None
        self.stopped = False
        self._tool_index: dict[int, int] = {}

    def feed(self, event: atypes.RawMessageStreamEvent) -> Iterator[StreamEvent]:
        if isinstance(event, atypes.RawMessageStartEvent):
            self.model = event.message.model
            self.usage = _usage(event.message.usage)
            yield UsageEvent(self.usage)
        elif isinstance(event, atypes.RawContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, atypes.ToolUseBlock):
                index = self._tool_index.setdefault(event.index, len(self._tool_index))
                yield ToolCallDelta(index, block.id, block.name, "")
        elif isinstance(event, atypes.RawContentBlockDeltaEvent):
            delta = event.delta
            if isinstance(delta, atypes.TextDelta) and delta.text:
                self.text += delta.text
                yield TextDelta(delta.text)
            elif isinstance(delta, atypes.InputJSONDelta) and event.index in self._tool_index:
                yield ToolCallDelta(self._tool_index[event.index], None, None, delta.partial_json)
        elif isinstance(event, atypes.RawMessageDeltaEvent):
            self.usage = _usage(event.usage, self.usage)
            self.stop_reason = event.delta.stop_reason
            yield UsageEvent(self.usage)
        elif isinstance(event, atypes.RawMessageStopEvent):
            self.stopped = True

    def finish(self) -> StreamEnd:
        if not self.stopped:
            raise StreamInterrupted(
                "the stream ended before message_stop", provider=PROVIDER, partial_text=self.text
            )
        return StreamEnd(_stop_reason(self.stop_reason, self.text), self.usage, self.model)


class AnthropicModel(Model):
    """A Claude model, e.g. `AnthropicModel("claude-sonnet-4-5")`.

    Key from `api_key` or ANTHROPIC_API_KEY; endpoint from `base_url` or ANTHROPIC_BASE_URL.
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
        self._client = anthropic.AsyncAnthropic(
            api_key=resolve_api_key(PROVIDER, api_key),
            base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
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
        system, turns = to_anthropic(messages)
        params: dict[str, Any] = {"model": self.name, "messages": turns, "max_tokens": max_tokens}
        if system:
            params["system"] = system
        if tools:
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                for t in tools
            ]
        if temperature is not None:
            # The SDK no longer lists sampling parameters; models that still accept one get it
            # as an extra body field, the others answer with an InvalidRequest.
            params["extra_body"] = {"temperature": temperature}
        if stop:
            params["stop_sequences"] = list(stop)
        return params

    async def _request(self, messages: Sequence[Message], options: CallOptions) -> Response:
        tools, max_tokens, temperature, stop = _settings(options)
        params = self._params(messages, tools, max_tokens, temperature, stop)
        try:
            message = await self._client.messages.create(**params, stream=False)
        except Exception as exc:
            raise_mapped(exc, map_error(exc))
        text = "".join(b.text for b in message.content if isinstance(b, atypes.TextBlock))
        calls = tuple(
            ToolCall(b.id, b.name, dict(b.input) if isinstance(b.input, dict) else {})
            for b in message.content
            if isinstance(b, atypes.ToolUseBlock)
        )
        return Response(
            text=text,
            tool_calls=calls,
            usage=_usage(message.usage),
            stop_reason=_stop_reason(message.stop_reason, text),
            model=message.model,
            provider=PROVIDER,
        )

    async def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[StreamEvent]:
        tools, max_tokens, temperature, stop = _settings(options)
        params = self._params(messages, tools, max_tokens, temperature, stop)
        try:
            raw = await self._client.messages.create(**params, stream=True)
        except Exception as exc:
            raise_mapped(exc, map_error(exc))
        state = _StreamState()
        started = False
        try:
            async for event in raw:
                started = True
                for out in state.feed(event):
                    yield out
            yield state.finish()
        except Exception as exc:
            raise_mapped(exc, map_error(exc, partial_text=state.text, in_stream=started))
        finally:
            await raw.close()

    async def aclose(self) -> None:
        await self._client.close()
