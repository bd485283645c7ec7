"""Local models through the official `ollama` SDK (`AsyncClient.chat`, `/api/chat`).

Usage is `prompt_eval_count` / `eval_count` from the final (`done: true`) chunk. Ollama has no
tool-call ids, so calls are numbered `call_0`, `call_1`, ... and tool results are matched by
`tool_name`. Ollama runs models with its own context size (`num_ctx`); an explicit
`context_window=` is sent as `num_ctx`. Ollama's errors drop the response headers, so an
event hook keeps a 429's `retry-after` for the error mapping.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

from .errors import (
    LLMError,
    ProviderNotInstalled,
    StreamInterrupted,
    UnknownModel,
    error_for_status,
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
from .messages import Message, ToolCall, ToolDef, tool_names_by_call_id
from .model import Model, raise_mapped
from .options import CallOptions
from .options import settings_of as _settings

try:
    import httpx
    import ollama
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ProviderNotInstalled("ollama", "ollama") from exc

__all__ = ["OllamaModel", "map_error"]

PROVIDER = "ollama"
DEFAULT_TIMEOUT = 600.0
_last_retry_after: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "ollama_retry_after", default=None
)


async def _remember_retry_after(response: httpx.Response) -> None:
    if response.status_code == 429:
        _last_retry_after.set(parse_retry_after(dict(response.headers)))


def map_error(
    exc: Exception, *, partial_text: str = "", in_stream: bool = False
) -> LLMError | None:
    """The LLMError for an exception of the ollama SDK (None if it is not one)."""
    if isinstance(exc, LLMError):
        exc.partial_text = exc.partial_text or partial_text
        return exc
    if isinstance(exc, ollama.ResponseError):
        message = str(exc.error)
        if exc.status_code < 0:  # an `{"error": ...}` line inside a stream
            return StreamInterrupted(
                f"stream error: {message}", provider=PROVIDER, partial_text=partial_text
            )
        lowered = message.lower()
        if exc.status_code == 404 or ("model" in lowered and "not found" in lowered):
            return UnknownModel(message, provider=PROVIDER, status=exc.status_code)
        return error_for_status(
            exc.status_code,
            message,
            provider=PROVIDER,
            retry_after=_last_retry_after.get(),
            partial_text=partial_text,
        )
    if isinstance(exc, ValueError) and in_stream:  # a line that is not JSON
        return StreamInterrupted(
            f"unreadable stream chunk: {exc}", provider=PROVIDER, partial_text=partial_text
        )
    return transport_error(exc, provider=PROVIDER, partial_text=partial_text, in_stream=in_stream)


def to_ollama(messages: Sequence[Message]) -> list[dict[str, Any]]:
    names = tool_names_by_call_id(messages)
    converted: list[dict[str, Any]] = []
    for message in messages:
        entry: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            entry["tool_calls"] = [
                {"function": {"name": c.name, "arguments": dict(c.arguments)}}
                for c in message.tool_calls
            ]
        if message.role == "tool":
            entry["tool_name"] = message.tool_name or names.get(message.tool_call_id or "", "")
        converted.append(entry)
    return converted


def _usage(response: ollama.ChatResponse) -> Usage:
    return Usage(
        input_tokens=response.prompt_eval_count or 0, output_tokens=response.eval_count or 0
    )


def _stop_reason(done_reason: str | None, has_calls: bool) -> str:
    if done_reason == "length":
        return MAX_TOKENS
    return TOOL_USE if has_calls else END_TURN


class _StreamState:
    def __init__(self) -> None:
        self.text = ""
        self.calls = 0
        self.end: StreamEnd | None = None

    def feed(self, chunk: ollama.ChatResponse) -> Iterator[StreamEvent]:
        message = chunk.message
        if message.content:
            self.text += message.content
            yield TextDelta(message.content)
        for call in message.tool_calls or ():
            arguments = json.dumps(dict(call.function.arguments), ensure_ascii=False)
            yield ToolCallDelta(self.calls, f"call_{self.calls}", call.function.name, arguments)
            self.calls += 1
        if chunk.done:
            usage = _usage(chunk)
            yield UsageEvent(usage)
            reason = _stop_reason(chunk.done_reason, self.calls > 0)
            self.end = StreamEnd(reason, usage, chunk.model)

    def finish(self) -> StreamEnd:
        if self.end is None:
            raise StreamInterrupted(
                "the stream ended before its done chunk", provider=PROVIDER, partial_text=self.text
            )
        return self.end


class OllamaModel(Model):
    """A model served by Ollama, e.g. `OllamaModel("llama3.2")`.

    Host from `base_url`, else OLLAMA_HOST, else http://127.0.0.1:11434. `api_key` (or
    OLLAMA_API_KEY, read by the SDK) is only for hosted Ollama.
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
        self._num_ctx = context_window
        # Ollama's client has no retries; `max_retries` is accepted for a uniform signature.
        self.max_retries = max_retries
        headers = {"authorization": f"Bearer {api_key}"} if api_key else None
        self._client = ollama.AsyncClient(
            host=base_url,
            timeout=DEFAULT_TIMEOUT if timeout is None else timeout,
            headers=headers,
            event_hooks={"response": [_remember_retry_after]},
        )

    def _params(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDef],
        max_tokens: int,
        temperature: float | None,
        stop: Sequence[str] | None,
    ) -> dict[str, Any]:
        options: dict[str, Any] = {"num_predict": max_tokens}
        if temperature is not None:
            options["temperature"] = temperature
        if stop:
            options["stop"] = list(stop)
        if self._num_ctx:
            options["num_ctx"] = self._num_ctx
        params: dict[str, Any] = {
            "model": self.name,
            "messages": to_ollama(messages),
            "options": options,
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
        return params

    async def _request(self, messages: Sequence[Message], options: CallOptions) -> Response:
        tools, max_tokens, temperature, stop = _settings(options)
        params = self._params(messages, tools, max_tokens, temperature, stop)
        _last_retry_after.set(None)
        try:
            response = await self._client.chat(**params, stream=False)
        except Exception as exc:
            raise_mapped(exc, map_error(exc))
        calls = tuple(
            ToolCall(f"call_{i}", c.function.name, dict(c.function.arguments))
            for i, c in enumerate(response.message.tool_calls or ())
        )
        return Response(
            text=response.message.content or "",
            tool_calls=calls,
            usage=_usage(response),
            stop_reason=_stop_reason(response.done_reason, bool(calls)),
            model=response.model or self.name,
            provider=PROVIDER,
        )

    async def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[StreamEvent]:
        tools, max_tokens, temperature, stop = _settings(options)
        params = self._params(messages, tools, max_tokens, temperature, stop)
        _last_retry_after.set(None)
        state = _StreamState()
        started = False
        raw: AsyncIterator[ollama.ChatResponse] | None = None
        try:
            raw = await self._client.chat(**params, stream=True)
            # The request is sent on the first iteration: errors before the first chunk are
            # HTTP errors, not broken streams.
            async for chunk in raw:
                started = True
                for event in state.feed(chunk):
                    yield event
            yield state.finish()
        except Exception as exc:
            mapped = map_error(exc, partial_text=state.text, in_stream=started)
            raise_mapped(exc, mapped)
        finally:
            close = getattr(raw, "aclose", None)
            if close is not None:
                await close()

    async def aclose(self) -> None:
        close: Callable[[], Awaitable[None]] = self._client.close  # untyped in the SDK
        await close()
