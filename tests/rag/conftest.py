"""Fixtures for retrieval and cache tests: a pool on a fresh database, the test embedder,
and the real MiniLM embedder (loaded at most once per test session)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from threadline import Engine
from threadline.rag import HashEmbedder, MiniLMEmbedder


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with Engine(database_url, worker=False) as engine:
        yield engine.pool


@pytest.fixture
def embedder() -> HashEmbedder:
    return HashEmbedder()


_minilm = MiniLMEmbedder(threads=2)


@pytest.fixture
def minilm() -> MiniLMEmbedder:
    """One real embedder for the whole session: the model loads on its first use."""
    return _minilm
