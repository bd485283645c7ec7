"""The provider test servers of tests/llm, for calls that go through the ledger."""

from ..llm.conftest import ProviderCase, provider, servers

__all__ = ["ProviderCase", "provider", "servers"]
