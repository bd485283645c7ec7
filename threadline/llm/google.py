"""Google Gemini through the official `google-genai` SDK (the Gemini API, not Vertex AI).

System messages go to `system_instruction`; tool results are `function_response` parts,
named after the call they answer. Usage follows genai-prices: input is
`prompt_token_count` + `tool_use_prompt_token_count`, output is `candidates_token_count` +
`thoughts_token_count`. A SAFETY-like finish reason or a blocked prompt raises
`ContentFiltered`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from .errors import (
    ContentFiltered,
    ContextWindowExceeded,
    InvalidRequest,
    LLMError,
    ProviderNotInstalled,
    RateLimited,
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
from .messages import Message, ToolCall, ToolDef, tool_names_by_call_id
from .model import Model, raise_mapped, resolve_api_key
from .options import CallOptions
from .options import settings_of as _settings

try:
    from google import genai
    from google.genai import errors as genai_errors
    from google.genai import types as gtypes
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ProviderNotInstalled("google", "google-genai") from exc

__all__ = ["GoogleModel", "map_error"]

PROVIDER = "google"
BASE_URL_ENV = "GOOGLE_GEMINI_BASE_URL"
_FILTERED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
}
_RETRY_DELAY = re.compile(r"^([0-9.]+)s$")


def _retry_delay(details: Any) -> float | None:
    """The `RetryInfo.retryDelay` ("37s") of a Google API error body, if any."""
    error = details.get("error", details) if isinstance(details, Mapping) else {}
    for item in error.get("details") or () if isinstance(error, Mapping) else ():
        delay = item.get("retryDelay") if isinstance(item, Mapping) else None
        if isinstance(delay, str) and (match := _RETRY_DELAY.match(delay)):
            return float(match.group(1))
    return None


def map_error(
    exc: Exception, *, partial_text: str = "", in_stream: bool = False
) -> LLMError | None:
    """The LLMError for an exception of the google-genai SDK (None if it is not one)."""
    if isinstance(exc, LLMError):
        exc.partial_text = exc.partial_text or partial_text
        return exc
    if isinstance(exc, genai_errors.APIError):
        status = int(exc.code) if exc.code else 500
        message = exc.message or str(exc)
        common: dict[str, Any] = {
            "provider": PROVIDER,
            "status": status,
            "partial_text": partial_text,
        }
        if status == 429 or exc.status == "RESOURCE_EXHAUSTED":
            headers = getattr(exc.response, "headers", None)
            retry_after = parse_retry_after(dict(headers) if headers else None)
            if retry_after is None:
                retry_after = _retry_delay(exc.details)
            return RateLimited(message, retry_after=retry_after, **common)
        if status == 400 and mentions_context_limit(message):
            return ContextWindowExceeded(message, **common)
        if status == 400 and exc.status == "FAILED_PRECONDITION":
            return InvalidRequest(message, **common)
        return error_for_status(status, message, provider=PROVIDER, partial_text=partial_text)
    if isinstance(exc, ValueError) and in_stream:  # e.g. UnknownApiResponseError: bad JSON
        return StreamInterrupted(
            f"unreadable stream chunk: {exc}", provider=PROVIDER, partial_text=partial_text
        )
    return transport_error(exc, provider=PROVIDER, partial_text=partial_text, in_stream=in_stream)


def _response_payload(content: str) -> dict[str, Any]:
    try:
        value = json.loads(content)
    except ValueError:
        return {"result": content}
    return value if isinstance(value, dict) else {"result": value}


def _parts(message: Message, names: Mapping[str, str]) -> list[gtypes.Part]:
    if message.role == "tool":
        call_id = message.tool_call_id or ""
        response = gtypes.FunctionResponse(
            id=call_id,
            name=message.tool_name or names.get(call_id, "tool"),
            response=_response_payload(message.content),
        )
        return [gtypes.Part(function_response=response)]
    parts = [gtypes.Part(text=message.content)] if message.content else []
    for call in message.tool_calls:
        function_call = gtypes.FunctionCall(id=call.id, name=call.name, args=dict(call.arguments))
        parts.append(gtypes.Part(function_call=function_call))
    return parts


def to_gemini(messages: Sequence[Message]) -> tuple[str | None, list[gtypes.Content]]:
    """(system instruction, contents); consecutive turns of one role are merged."""
    system = "\n\n".join(m.content for m in messages if m.role == "system") or None
    names = tool_names_by_call_id(messages)
    contents: list[gtypes.Content] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "model" if message.role == "assistant" else "user"
        parts = _parts(message, names)
        if contents and contents[-1].role == role and contents[-1].parts is not None:
            contents[-1].parts.extend(parts)
        else:
            contents.append(gtypes.Content(role=role, parts=parts))
    return system, contents


def _usage(metadata: gtypes.GenerateContentResponseUsageMetadata | None) -> Usage:
    if metadata is None:
        return Usage()
    thoughts = metadata.thoughts_token_count or 0
    return Usage(
        input_tokens=(metadata.prompt_token_count or 0)
        + (metadata.tool_use_prompt_token_count or 0),
        output_tokens=(metadata.candidates_token_count or 0) + thoughts,
        cache_read_tokens=metadata.cached_content_token_count or 0,
        reasoning_tokens=thoughts,
    )


class _Chunk:
    """The text, function calls and finish reason of one response (or stream chunk)."""

    def __init__(self, response: gtypes.GenerateContentResponse, text_so_far: str) -> None:
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            raise ContentFiltered(
                f"the prompt was blocked: {feedback.block_reason.value}",
                provider=PROVIDER,
                partial_text=text_so_far,
            )
        candidate = response.candidates[0] if response.candidates else None
        parts = (candidate.content.parts if candidate and candidate.content else None) or []
        self.text = "".join(p.text for p in parts if p.text and not p.thought)
        self.calls = [p.function_call for p in parts if p.function_call is not None]
        reason = candidate.finish_reason if candidate else None
        self.finish: str | None = reason.value if reason is not None else None
        if self.finish in _FILTERED:
            raise ContentFiltered(
                f"the answer was blocked ({self.finish})",
                provider=PROVIDER,
                partial_text=text_so_far + self.text,
            )


def _stop_reason(finish: str | None, has_calls: bool) -> str:
    if finish == "MAX_TOKENS":
        return MAX_TOKENS
    return TOOL_USE if has_calls else END_TURN


class _StreamState:
    def __init__(self) -> None:
        self.text = ""
        self.model = ""
        self.usage = Usage()
        self.finish: str | None = None
        self.calls = 0
        self.blocked: ContentFiltered | None = None

    def feed(self, response: gtypes.GenerateContentResponse) -> Iterator[StreamEvent]:
        if self.blocked is not None:
            return
        try:
            chunk = _Chunk(response, self.text)
        except ContentFiltered as exc:
            # Read the stream to its end before raising: closing google-genai's stream early
            # leaves its inner generators to be closed noisily by the garbage collector.
            self.blocked = exc
            return
        self.model = response.model_version or self.model
        if chunk.text:
            self.text += chunk.text
            yield TextDelta(chunk.text)
        for call in chunk.calls:
            arguments = json.dumps(call.args or {}, ensure_ascii=False)
            yield ToolCallDelta(self.calls, call.id or f"call_{self.calls}", call.name, arguments)
            self.calls += 1
        if response.usage_metadata is not None:
            self.usage = _usage(response.usage_metadata)
            yield UsageEvent(self.usage)
        self.finish = chunk.finish or self.finish

    def finish_event(self) -> StreamEnd:
        if self.blocked is not None:
            raise self.blocked
        if self.finish is None:
            raise StreamInterrupted(
                "the stream ended without a finish reason",
                provider=PROVIDER,
                partial_text=self.text,
            )
        return StreamEnd(_stop_reason(self.finish, self.calls > 0), self.usage, self.model)


class GoogleModel(Model):
    """A Gemini model, e.g. `GoogleModel("gemini-2.5-flash")`.

    Key from `api_key`, GEMINI_API_KEY or GOOGLE_API_KEY; endpoint from `base_url` or
    GOOGLE_GEMINI_BASE_URL.
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
        http_options = gtypes.HttpOptions(
            base_url=base_url or os.environ.get(BASE_URL_ENV) or None,
            timeout=None if timeout is None else int(timeout * 1000),
            retry_options=gtypes.HttpRetryOptions(attempts=max_retries + 1),
        )
        self._client = genai.Client(
            api_key=resolve_api_key(PROVIDER, api_key), vertexai=False, http_options=http_options
        )

    def _config(
        self,
        system: str | None,
        tools: Sequence[ToolDef],
        max_tokens: int,
        temperature: float | None,
        stop: Sequence[str] | None,
    ) -> gtypes.GenerateContentConfig:
        declarations = [
            gtypes.FunctionDeclaration(
                name=t.name, description=t.description, parameters_json_schema=dict(t.parameters)
            )
            for t in tools
        ]
        return gtypes.GenerateContentConfig(
            system_instruction=system,
            max_output_tokens=max_tokens,
            temperature=temperature,
            stop_sequences=list(stop) if stop else None,
            tools=[gtypes.Tool(function_declarations=declarations)] if declarations else None,
            automatic_function_calling=gtypes.AutomaticFunctionCallingConfig(disable=True),
        )

    async def _request(self, messages: Sequence[Message], options: CallOptions) -> Response:
        tools, max_tokens, temperature, stop = _settings(options)
        system, contents = to_gemini(messages)
        config = self._config(system, tools, max_tokens, temperature, stop)
        try:
            response = await self._client.aio.models.generate_content(
                model=self.name, contents=list(contents), config=config
            )
        except Exception as exc:
            raise_mapped(exc, map_error(exc))
        chunk = _Chunk(response, "")
        calls = tuple(
            ToolCall(c.id or f"call_{i}", c.name or "", dict(c.args or {}))
            for i, c in enumerate(chunk.calls)
        )
        return Response(
            text=chunk.text,
            tool_calls=calls,
            usage=_usage(response.usage_metadata),
            stop_reason=_stop_reason(chunk.finish, bool(calls)),
            model=response.model_version or self.name,
            provider=PROVIDER,
        )

    async def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[StreamEvent]:
        tools, max_tokens, temperature, stop = _settings(options)
        system, contents = to_gemini(messages)
        config = self._config(system, tools, max_tokens, temperature, stop)
        try:
            raw = await self._client.aio.models.generate_content_stream(
                model=self.name, contents=list(contents), config=config
            )
        except Exception as exc:
            raise_mapped(exc, map_error(exc))
        state = _StreamState()
        started = False  # the SDK sends the request on the first iteration
        try:
            async for response in raw:
                started = True
                for event in state.feed(response):
                    yield event
            yield state.finish_event()
        except Exception as exc:
            raise_mapped(exc, map_error(exc, partial_text=state.text, in_stream=started))
        finally:
            close = getattr(raw, "aclose", None)
            if close is not None:
                await close()

    async def aclose(self) -> None:
        await self._client.aio.aclose()
