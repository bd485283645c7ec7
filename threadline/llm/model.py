"""The one interface every model offers, and `get_model("provider:model")`.

Adapters are imported only when asked for, so a provider's SDK is needed only by those who
use it (`pip install 'threadline[anthropic]'` and so on). Adapters never retry by default
(`max_retries=0`): retries, cooldowns and fallback belong to the router above.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn, Self

from .context_windows import context_window as lookup_context_window
from .errors import LLMError, MissingProviderKey, UnknownModel
from .events import Response, ResponseBuilder, StreamEvent
from .messages import Message, ToolDef

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
    text it had already yielded.
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
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolDef] = (),
        max_tokens: int = 1024,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> Response:
        """One complete answer. This default collects `stream`; adapters with a plain
        (non-streaming) API call override it."""
        builder = ResponseBuilder(self.provider, self.name)
        events = self.stream(
            messages, tools=tools, max_tokens=max_tokens, temperature=temperature, stop=stop
        )
        async for event in events:
            builder.add(event)
        return builder.build()

    @abstractmethod
    def stream(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[ToolDef] = (),
        max_tokens: int = 1024,
        temperature: float | None = None,
        stop: Sequence[str] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """The answer as it is generated; the last event is always `StreamEnd`."""

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
