"""The one interface every model offers, and `get_model("provider:model")`.

Adapters are imported only when asked for, so a provider's SDK is needed only by those who
use it (`pip install 'threadline[anthropic]'` and so on). Adapters never retry by default
(`max_retries=0`): retries, cooldowns and fallback belong to the router above.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar

from .context_windows import context_window as lookup_context_window
from .errors import LLMError, MissingProviderKey, UnknownModel
from .events import CallEvent, Response, ResponseBuilder, StreamEnd, TextDelta, ToolCallDelta
from .messages import Message
from .options import CallOptions

T = TypeVar("T")

__all__ = ["DEFAULT_MODELS", "PROVIDERS", "Model", "default_model_spec", "get_model"]

# provider -> (module, class); the module imports its SDK.
PROVIDERS: dict[str, tuple[str, str]] = {
    "anthropic": ("threadline.llm.anthropic", "AnthropicModel"),
    "openai": ("threadline.llm.openai", "OpenAIModel"),
    "google": ("threadline.llm.google", "GoogleModel"),
    "ollama": ("threadline.llm.ollama", "OllamaModel"),
    "demo": ("threadline.llm.demo", "DemoModel"),
}

# What `default_model_spec` picks for a provider whose key is set.
DEFAULT_MODELS: dict[str, str] = {
    "anthropic": "claude-sonnet-4-6",
    "openai": "gpt-4o-mini",
    "google": "gemini-2.5-flash",
}
_KEY_ENV: dict[str, tuple[str, ...]] = {
    "anthropic": ("ANTHROPIC_API_KEY",),
    "openai": ("OPENAI_API_KEY",),
    "google": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}


class Model(ABC):
    """A chat model of one provider.

    `request` makes one plain (non-streaming) call; `stream` yields `TextDelta`,
    `ToolCallDelta` and `UsageEvent`s and always ends with a `StreamEnd`. A failed call
    raises an `LLMError`; a stream that breaks raises one with `partial_text` set to the
    text it had already yielded. Both take one `CallOptions` (or keyword settings).

    A provider adapter implements `_stream` (and `_request` where its API has a plain
    call). A layer around models (metering, fallback, the cache) is a `Model` too, with the
    same two methods: see `WrapperModel`.
    """

    provider: str = ""

    def __init__(self, name: str, *, context_window: int | None = None) -> None:
        self.name = name
        self.context_window = context_window or lookup_context_window(self.provider, name)

    @property
    def spec(self) -> str:
        """`provider:model`, the string `get_model` accepts."""
        return f"{self.provider}:{self.name}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    async def request(
        self, messages: Sequence[Message], options: CallOptions | None = None, **settings: Any
    ) -> Response:
        """One complete answer. `settings` change the options' `tools`, `max_tokens`,
        `temperature` or `stop` (`model.request(messages, max_tokens=200)`)."""
        return await self._request(messages, CallOptions.of(options, **settings))

    def stream(
        self, messages: Sequence[Message], options: CallOptions | None = None, **settings: Any
    ) -> AsyncIterator[CallEvent]:
        """The answer as it is generated; the last event is always `StreamEnd`."""
        return self._stream(messages, CallOptions.of(options, **settings))

    async def _request(self, messages: Sequence[Message], options: CallOptions) -> Response:
        """This default collects `_stream`; adapters with a plain (non-streaming) API call
        override it."""
        builder = ResponseBuilder(self.provider, self.name)
        async for event in self._stream(messages, options):
            builder.add(event)
        return builder.build()

    @abstractmethod
    def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[CallEvent]:
        """The answer's events; the last is always `StreamEnd`."""

    def _events(
        self, messages: Sequence[Message], options: CallOptions, *, streams: bool
    ) -> AsyncIterator[CallEvent]:
        """The call's events, streamed (`streams`) or, from a plain call, its answer as the
        events a stream of it would have had: what a layer around this model consumes, so
        that the layers above a plain call hear its notices as they happen."""
        if streams:
            return self._stream(messages, options)
        return answer_events(self._request(messages, options))

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to release here
        """Release the HTTP client's connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def parse_spec(spec: str) -> tuple[str, str]:
    """Split `provider:model`; the model part may itself contain ':' (`ollama:llama3.2:3b`)."""
    provider, sep, name = spec.partition(":")
    if not sep or not provider or not name:
        raise UnknownModel(
            f"model {spec!r} must be written 'provider:model', e.g. 'anthropic:claude-sonnet-4-5'"
            f"; known providers: {', '.join(sorted(PROVIDERS))}"
        )
    if provider not in PROVIDERS:
        raise UnknownModel(
            f"unknown provider {provider!r} in {spec!r}; "
            f"known providers: {', '.join(sorted(PROVIDERS))}",
            provider=provider,
        )
    return provider, name


def get_model(spec: str, **options: Any) -> Model:
    """The model named `provider:model`, e.g. `get_model("openai:gpt-4o-mini")`.

    `options` go to the adapter: `api_key`, `base_url`, `timeout`, `max_retries`,
    `context_window` (and the demo model's `tokens_per_second`, `fail_with`).
    """
    provider, name = parse_spec(spec)
    module_name, class_name = PROVIDERS[provider]
    module = importlib.import_module(module_name)
    model_class: type[Model] = getattr(module, class_name)
    return model_class(name, **options)


def check_installed(spec: str) -> None:
    """Raise `ProviderNotInstalled` (naming the pip extra) or `UnknownModel` now, instead of
    at the first call: what a server checks of its agents' models before it starts."""
    provider, _ = parse_spec(spec)
    importlib.import_module(PROVIDERS[provider][0])


def default_model_spec(environ: Mapping[str, str] | None = None) -> str:
    """The first provider whose API key is set (Anthropic, OpenAI, Google), else the offline
    demo model."""
    env = os.environ if environ is None else environ
    for provider, variables in _KEY_ENV.items():
        if any(env.get(v) for v in variables):
            return f"{provider}:{DEFAULT_MODELS[provider]}"
    return "demo:threadline-demo"


def resolve_api_key(provider: str, explicit: str | None) -> str:
    """The given key, else the provider's environment variable; MissingProviderKey names it."""
    if explicit:
        return explicit
    variables = _KEY_ENV[provider]
    for variable in variables:
        if value := os.environ.get(variable):
            return value
    raise MissingProviderKey(
        f"no API key for provider {provider!r}: set {' or '.join(variables)} or pass api_key=...",
        provider=provider,
    )


def raise_mapped(exc: Exception, mapped: LLMError | None) -> NoReturn:
    """Raise the LLMError an adapter mapped `exc` to, or `exc` itself if it is not an SDK
    error (a bug should surface as itself, not as a provider failure)."""
    if mapped is None or mapped is exc:
        raise exc
    raise mapped from exc


class WrapperModel(Model):
    """A model around another (`wrapped`): it answers under the wrapped model's provider,
    name and context window, and closing it closes the wrapped one. A subclass overrides
    `_events` to do its part around the wrapped model's events (`streams` passed down:
    a plain call stays a plain call at the provider)."""

    def __init__(self, wrapped: Model) -> None:
        super().__init__(wrapped.name, context_window=wrapped.context_window)
        self.wrapped = wrapped
        self.provider = wrapped.provider

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.wrapped!r})"

    async def _request(self, messages: Sequence[Message], options: CallOptions) -> Response:
        builder = ResponseBuilder(self.provider, self.name)
        async for event in self._events(messages, options, streams=False):
            builder.add(event)
        return builder.build()

    def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[CallEvent]:
        return self._events(messages, options, streams=True)

    def _events(
        self, messages: Sequence[Message], options: CallOptions, *, streams: bool
    ) -> AsyncIterator[CallEvent]:
        return self.wrapped._events(messages, options, streams=streams)

    async def aclose(self) -> None:
        await self.wrapped.aclose()


@contextlib.asynccontextmanager
async def closing(events: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Iterate `events` and close them however the iteration ends: a layer that stops early
    (an error, a cancelled turn) ends the layers below it now, not when they are collected,
    so that a cancelled call's ledger row is written at once."""
    try:
        yield events
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()


async def answer_events(answer: Awaitable[Response]) -> AsyncIterator[CallEvent]:
    """A plain call's answer as stream events: its notices, its text in one piece, its tool
    calls, and its end."""
    response = await answer
    for notice in response.notices:
        yield notice
    if response.text:
        yield TextDelta(response.text)
    for index, call in enumerate(response.tool_calls):
        yield ToolCallDelta(index, call.id, call.name, json.dumps(dict(call.arguments)))
    yield StreamEnd(
        response.stop_reason,
        response.usage,
        response.model,
        cost_usd=response.cost_usd,
        cached=response.cached,
    )
