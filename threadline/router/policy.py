"""`ModelPolicy`: the models a call may use, most capable first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigurationError
from ..llm import Model

__all__ = ["ModelPolicy"]


def _spec(model: str | Model) -> str:
    return model if isinstance(model, str) else model.spec


@dataclass(frozen=True, init=False)
class ModelPolicy:
    """An ordered chain of models, written the way one reads it:

        ModelPolicy("anthropic:claude-sonnet-4-5",
                    fallback=["anthropic:claude-haiku-4-5", "ollama:llama3.2"])

    For each call the router takes the first model that is not cooling down, whose context
    window holds the prompt, and whose worst case fits every budget with at least
    `min_output_tokens` (default: the LLM's, 256) of output: a stronger model is called with
    fewer tokens (`max_tokens` lowered to what the budget affords) down to that floor before a
    cheaper one is tried. A model may be a `provider:model` string or a `Model` instance.
    """

    models: tuple[str | Model, ...]
    min_output_tokens: int | None

    def __init__(
        self,
        model: str | Model,
        fallback: Sequence[str | Model] = (),
        *,
        min_output_tokens: int | None = None,
    ) -> None:
        if isinstance(fallback, str):
            fallback = [fallback]
        chain = (model, *fallback)
        specs = [_spec(m) for m in chain]
        if len(set(specs)) != len(specs):
            raise ConfigurationError(f"a model policy names a model twice: {specs}")
        if min_output_tokens is not None and min_output_tokens < 1:
            raise ConfigurationError("min_output_tokens must be at least 1")
        object.__setattr__(self, "models", chain)
        object.__setattr__(self, "min_output_tokens", min_output_tokens)

    @classmethod
    def of(cls, policy: ModelPolicy | str | Model) -> ModelPolicy:
        """A policy as given, or a chain of one model."""
        return policy if isinstance(policy, ModelPolicy) else cls(policy)

    @property
    def primary(self) -> str:
        """The model asked for: the first of the chain."""
        return _spec(self.models[0])

    @property
    def specs(self) -> tuple[str, ...]:
        return tuple(_spec(m) for m in self.models)

    def __str__(self) -> str:
        return " -> ".join(self.specs)
