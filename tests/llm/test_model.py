"""`get_model`: provider prefixes, keys, missing SDKs, defaults, and the package's layering."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import threadline.llm
from threadline.errors import ConfigurationError
from threadline.llm import (
    PROVIDERS,
    DemoModel,
    MissingProviderKey,
    ProviderNotInstalled,
    UnknownModel,
    default_model_spec,
    get_model,
)

KEY_VARIABLES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in KEY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def test_unknown_provider_prefix_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModel) as caught:
        get_model("mistral:mistral-large")
    message = str(caught.value)
    assert "'mistral'" in message
    for provider in ("anthropic", "openai", "google", "ollama", "demo"):
        assert provider in message
    assert isinstance(caught.value, ConfigurationError) and not caught.value.retryable


@pytest.mark.parametrize("spec", ["claude-sonnet-4-5", "anthropic:", ":gpt-4o"])
def test_malformed_spec_explains_the_format(spec: str) -> None:
    with pytest.raises(UnknownModel, match="provider:model"):
        get_model(spec)


@pytest.mark.parametrize(
    ("spec", "variables"),
    [
        ("anthropic:claude-sonnet-4-5", ["ANTHROPIC_API_KEY"]),
        ("openai:gpt-4o-mini", ["OPENAI_API_KEY"]),
        ("google:gemini-2.5-flash", ["GEMINI_API_KEY", "GOOGLE_API_KEY"]),
    ],
)
@pytest.mark.usefixtures("no_keys")
def test_missing_key_names_the_environment_variable(spec: str, variables: list[str]) -> None:
    with pytest.raises(MissingProviderKey) as caught:
        get_model(spec)
    for variable in variables:
        assert variable in str(caught.value)
    assert "api_key=" in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)


@pytest.mark.usefixtures("no_keys")
def test_local_and_demo_models_need_no_key() -> None:
    assert get_model("ollama:llama3.2:3b").name == "llama3.2:3b"
    demo = get_model("demo:threadline-demo")
    assert isinstance(demo, DemoModel) and demo.spec == "demo:threadline-demo"


def test_models_know_their_context_window() -> None:
    assert get_model("anthropic:claude-sonnet-4-5", api_key="k").context_window == 200_000
    assert get_model("google:gemini-2.5-flash", api_key="k").context_window == 1_048_576
    assert get_model("ollama:llama3.2").context_window == 4_096
    assert get_model("ollama:llama3.2", context_window=32_768).context_window == 32_768


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # makes `import anthropic` fail
    monkeypatch.delitem(sys.modules, "threadline.llm.anthropic", raising=False)
    with pytest.raises(ProviderNotInstalled) as caught:
        get_model("anthropic:claude-sonnet-4-5", api_key="k")
    assert "pip install 'threadline[anthropic]'" in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)


@pytest.mark.usefixtures("no_keys")
def test_default_model_is_the_demo_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_model_spec() == "demo:threadline-demo"
    monkeypatch.setenv("GOOGLE_API_KEY", "k")
    assert default_model_spec() == "google:gemini-2.5-flash"
    assert default_model_spec({"OPENAI_API_KEY": "k"}) == "openai:gpt-4o-mini"
    assert default_model_spec({"ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k"}).startswith(
        "anthropic:"
    )


def test_llm_package_knows_nothing_of_postgres_or_the_engine() -> None:
    package = Path(threadline.llm.__file__).parent
    forbidden = ("threadline.engine", "threadline.db", "asyncpg", "threadline.ledger")
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def test_every_provider_adapter_is_a_model() -> None:
    for provider in PROVIDERS:
        options = {"api_key": "k"} if provider in ("anthropic", "openai", "google") else {}
        model = get_model(f"{provider}:some-model", **options)
        assert model.provider == provider and model.name == "some-model"
        assert repr(model) == f"{type(model).__name__}('{provider}:some-model')"
