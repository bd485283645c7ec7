"""Routers over the provider test servers (tests/llm), on a fresh database per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from threadline import Engine
from threadline.ledger import Ledger
from threadline.llm.pricing import PriceOverrides
from threadline.router import CooldownPolicy, Models

from ..llm.conftest import servers
from ..llm.servers.base import ProviderServer, Script

__all__ = ["servers"]

# Ollama is free unless priced: a small price makes the last link of the chain cost something.
PRICES = PriceOverrides({"ollama:llama3.2": {"input_per_mtok": 0.02, "output_per_mtok": 0.04}})

MakeRouter = Callable[..., Models]


def model_options(servers: dict[str, ProviderServer], **extra: Any) -> dict[str, dict[str, Any]]:
    return {
        "anthropic": {"api_key": "k", "base_url": servers["anthropic"].url, **extra},
        "openai": {"api_key": "k", "base_url": servers["openai"].url + "/v1", **extra},
        "ollama": {"base_url": servers["ollama"].url, **extra},
    }


@pytest.fixture
def scripts(servers: dict[str, ProviderServer]) -> dict[str, Script]:
    for server in servers.values():
        server.script.reset()
    return {name: server.script for name, server in servers.items()}


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Engine]:
    async with Engine(database_url, worker=False) as engine:
        yield engine


@pytest.fixture
async def make_router(
    engine: Engine, servers: dict[str, ProviderServer], scripts: dict[str, Script]
) -> AsyncIterator[MakeRouter]:
    made: list[Models] = []

    def make(**options: Any) -> Models:
        router = Models(
            Ledger(engine.pool, overrides=PRICES),
            model_options=model_options(servers, **options.pop("model_options", {})),
            cooldowns=options.pop("cooldowns", CooldownPolicy(base_s=30)),
            **options,
        )
        made.append(router)
        return router

    yield make
    for router in made:
        await router.aclose()
        await router.ledger.close()


def models_asked(script: Script) -> list[str]:
    """The model each request to a test server named."""
    return [str(r.body["model"]) for r in script.requests if isinstance(r.body, dict)]
