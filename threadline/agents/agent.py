"""`Agent`: configuration plus a state machine. Each named state is an async handler that
takes the turn and returns the next state (or None to stay)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jinja2

from ..errors import ConfigurationError
from ..ledger import Budget
from ..rag.knowledge import Knowledge
from ..router import ModelPolicy
from ..tools import Tool

if TYPE_CHECKING:
    from .turn import Turn

Handler = Callable[["Turn"], Awaitable[str | None]]

_jinja = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)


@dataclass
class Agent:
    """A conversational agent.

    `prompt` is a Jinja2 template for the system prompt; it sees the session's `state`,
    `data` and anything passed to `turn.reply(**vars)`. `model` is a `provider:model` name or
    a `ModelPolicy` with fallbacks (default: the first provider with a key set, else the
    offline demo model). `budget`: `usd` caps each session, `daily` the agent's day, the
    `per_*` limits their scopes (see docs/budgets.md). `knowledge`: documents `turn.reply`
    retrieves passages from for the prompt, and the semantic cache for turns the handler
    marks cacheable (docs/rag.md).
    """

    name: str
    prompt: str = "You are a helpful assistant."
    model: str | ModelPolicy | None = None
    budget: Budget | None = None
    initial_state: str = "start"
    title: str = ""
    greeting: str | None = None
    max_tokens: int = 512
    tools: list[Tool] = field(default_factory=list)
    max_tool_rounds: int = 4
    knowledge: Knowledge | None = None
    budget_message: str = (
        "This conversation has used up its budget, so I can't answer more here. "
        "A colleague can help you further."
    )
    states: dict[str, Handler] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self._template = _jinja.from_string(self.prompt)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigurationError(f"agent {self.name!r}: bad prompt template: {exc}") from exc

    def state(self, name: str) -> Callable[[Handler], Handler]:
        """Register the handler of state `name`: `@agent.state("intake")`."""

        def register(fn: Handler) -> Handler:
            self.states[name] = fn
            return fn

        return register

    def handler(self, state: str) -> Handler:
        found = self.states.get(state)
        if found is None:
            known = ", ".join(sorted(self.states)) or "none"
            raise ConfigurationError(
                f"agent {self.name!r} has no handler for state {state!r} (known: {known})"
            )
        return found

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def render(self, **variables: Any) -> str:
        try:
            return self._template.render(**variables)
        except jinja2.UndefinedError as exc:
            raise ConfigurationError(f"agent {self.name!r}: prompt template: {exc}") from exc
