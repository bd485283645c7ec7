"""Provider test servers (one per provider for the whole run, a fresh script per test) and
`provider`, the parametrised fixture that runs a test against each provider's official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette

from threadline.llm import LLMError, Model, Overloaded, ServerError, StreamInterrupted, get_model

from .servers import anthropic, google, ollama, openai
from .servers.base import ProviderServer, Script, start_server

_APPS: dict[str, Callable[[Script], Starlette]] = {
    "anthropic": anthropic.create_app,
    "openai": openai.create_app,
    "google": google.create_app,
    "ollama": ollama.create_app,
}


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, ProviderServer]]:
    running: dict[str, ProviderServer] = {}
    for name, create_app in _APPS.items():
        script = Script()
        running[name] = start_server(create_app(script), script)
    yield running
    for server in running.values():
        server.stop()


def _server(servers: dict[str, ProviderServer], name: str) -> ProviderServer:
    server = servers[name]
    server.script.reset()
    return server


@pytest.fixture
def anthropic_api(servers: dict[str, ProviderServer]) -> ProviderServer:
    return _server(servers, "anthropic")


@pytest.fixture
def openai_api(servers: dict[str, ProviderServer]) -> ProviderServer:
    return _server(servers, "openai")


@pytest.fixture
def google_api(servers: dict[str, ProviderServer]) -> ProviderServer:
    return _server(servers, "google")


@pytest.fixture
def ollama_api(servers: dict[str, ProviderServer]) -> ProviderServer:
    return _server(servers, "ollama")


@dataclass
class ProviderCase:
    """One provider under test: its server, how to build its model, and what it reports."""

    provider: str
    model_name: str
    server: ProviderServer
    url_suffix: str = ""
    usage_fields: frozenset[str] = frozenset()
    stream_error: type[LLMError] = StreamInterrupted
    filters_content: bool = True
    models: list[Model] = field(default_factory=list)

    @property
    def script(self) -> Script:
        return self.server.script

    def model(self, **options: Any) -> Model:
        options.setdefault("base_url", self.server.url + self.url_suffix)
        if self.provider != "ollama":
            options.setdefault("api_key", "test-key")
        model = get_model(f"{self.provider}:{self.model_name}", **options)
        self.models.append(model)
        return model


def _case(name: str, server: ProviderServer) -> ProviderCase:
    if name == "anthropic":
        fields = frozenset({"cache_read_tokens", "cache_write_tokens"})
        return ProviderCase(name, "claude-sonnet-4-6", server, "", fields, Overloaded)
    if name == "openai":
        fields = frozenset({"cache_read_tokens", "reasoning_tokens"})
        return ProviderCase(name, "gpt-4o-mini", server, "/v1", fields, ServerError)
    if name == "google":
        fields = frozenset({"cache_read_tokens", "reasoning_tokens"})
        return ProviderCase(name, "gemini-2.5-flash", server, "", fields, ServerError)
    return ProviderCase(name, "llama3.2", server, filters_content=False)


@pytest.fixture(params=list(_APPS))
async def provider(
    request: pytest.FixtureRequest, servers: dict[str, ProviderServer]
) -> AsyncIterator[ProviderCase]:
    case = _case(request.param, _server(servers, request.param))
    yield case
    for model in case.models:
        await model.aclose()
