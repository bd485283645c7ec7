"""`Agent`: configuration plus a state machine. Each named state is an async handler that
takes the turn and returns the next state (or None to stay)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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

BUDGET_MESSAGE = "This conversation has used up its budget, so I can't answer more here."
HANDOFF_MESSAGE = (
    "This conversation has used up its budget, so I'm handing you over to a colleague, "
    "who will answer here."
)
WAITING_MESSAGE = "A colleague has your conversation and will answer here."


@dataclass(frozen=True)
class Exhausted:
    """What a session does when its budget cannot pay for the agent's model (a call the
    router cannot fit, even with `max_tokens` lowered to its floor):

    - `Exhausted.close(message=None)`: answer `message` (default: the agent's
      `budget_message`). When the money that ran out is the session's own total budget, the
      session is closed (status `closed`): later messages get the message at once, without a
      model call, until an operator moves it to a state again. A daily, per-turn, user or
      tenant limit only ends this turn: the next message tries again.
    - `Exhausted.handoff(message=None)`: say `message` (default `HANDOFF_MESSAGE`) and hand
      the session to a human operator (state `handoff`, status `handoff`), as
      `turn.handoff(...)` does.
    - `Exhausted.cheaper(model, then=Exhausted.close())`: answer with `model` (a spec or a
      `ModelPolicy`, e.g. a local one) instead; if that does not fit either, do `then`.

    `Agent(on_budget_exhausted=...)` also takes "close" or "handoff".
    """

    action: Literal["close", "handoff", "cheaper"]
    message: str | None = None
    model: str | ModelPolicy | None = None
    then: Exhausted | None = None

    @classmethod
    def close(cls, message: str | None = None) -> Exhausted:
        return cls("close", message)

    @classmethod
    def handoff(cls, message: str | None = None) -> Exhausted:
        return cls("handoff", message)

    @classmethod
    def cheaper(cls, model: str | ModelPolicy, then: Exhausted | None = None) -> Exhausted:
        return cls("cheaper", model=model, then=then or cls.close())

    @classmethod
    def of(cls, value: Exhausted | str) -> Exhausted:
        if isinstance(value, Exhausted):
            return value
        if value == "close":
            return cls.close()
        if value == "handoff":
            return cls.handoff()
        raise ConfigurationError(
            f"on_budget_exhausted must be 'close', 'handoff' or an Exhausted, got {value!r}"
        )

    def specs(self) -> tuple[str, ...]:
        """The cheaper models this may fall back to, in order."""
        own = ModelPolicy.of(self.model).specs if self.model is not None else ()
        return own + (self.then.specs() if self.then is not None else ())

    def final(self) -> Exhausted:
        """What happens when no cheaper model fits either."""
        return self if self.then is None else self.then.final()

    def text(self, agent: Agent) -> str:
        """What this action says."""
        if self.message is not None:
            return self.message
        return HANDOFF_MESSAGE if self.action == "handoff" else agent.budget_message


@dataclass
class Agent:
    """A conversational agent.

    `prompt` is a Jinja2 template for the system prompt; it sees the session's `state`,
    `data` and anything passed to `turn.reply(**vars)`. `model` is a `provider:model` name or
    a `ModelPolicy` with fallbacks (default: the first provider with a key set, else the
    offline demo model). `budget`: `usd` caps each session, `daily` the agent's day, the
    `per_*` limits their scopes (see docs/budgets.md). `on_budget_exhausted`: what a session
    does when the budget cannot pay for a reply (`Exhausted`: close with `budget_message`, the
    default; hand off to a human; or answer with a cheaper model). `knowledge`: documents
    `turn.reply` retrieves passages from for the prompt, and the semantic cache for turns the
    handler marks cacheable (docs/rag.md). `show_cached`: clients are told which answers the
    cache gave (`cached` in `message.start`/`message.end`, the widget's "instant answer");
    off by default, the dashboard and the ledger say it either way.
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
    show_cached: bool = False  # tell clients an answer came from the cache ("instant answer")
    budget_message: str = BUDGET_MESSAGE
    on_budget_exhausted: Exhausted | Literal["close", "handoff"] = field(
        default_factory=Exhausted.close
    )
    states: dict[str, Handler] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.on_budget_exhausted = Exhausted.of(self.on_budget_exhausted)
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

    @property
    def exhausted(self) -> Exhausted:
        """`on_budget_exhausted`, as an `Exhausted`."""
        return Exhausted.of(self.on_budget_exhausted)

    @property
    def closing_message(self) -> str:
        """What a session closed by its budget answers every later message with."""
        final = self.exhausted.final()
        return final.text(self) if final.action == "close" else self.budget_message

    def handler(self, state: str) -> Handler:
        found = self.states.get(state)
        if found is None and state == "handoff":  # a human has it: the agent only says so
            return _waiting_for_operator
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


async def _waiting_for_operator(turn: Turn) -> str | None:
    await turn.say(WAITING_MESSAGE)
    return None
