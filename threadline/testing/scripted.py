"""`ScriptedModel`: a model that says what the test tells it to, call by call.

    model = ScriptedModel([
        "Hello! How can I help?",                        # a text reply
        ToolUse("order_status", {"order_id": "A-1001"}),  # a tool call
        Reply("It shipped yesterday.", input_tokens=1200, output_tokens=9,
              tokens_per_second=20),                      # usage and pace of its own
        Fail(RateLimited("slow down"), after_tokens=3, text="Let me check that"),
    ], price=(3.0, 15.0))                                 # USD per million input/output tokens

Each model call takes the next step. A step streams its text word by word (a word is a token
here, as for the demo model, whose streaming this reuses) at `tokens_per_second` (0: at
once), then its tool call, and reports its usage (estimated from the prompt and the text
unless given). `max_tokens` and `stop` are not applied: the script is the answer. A call
after the last step raises `ScriptExhausted`, unless `loop=True` starts the script again.

Agents take it as their model (`Agent(model=ScriptedModel([...]))`, or
`ModelPolicy(ScriptedModel(...))`), or by name once it exists: `"scripted:NAME"`. Its price
reaches the ledger through the `threadline_server` fixture (`ScriptedPrices`).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..llm import LLMError, Message, Model, ModelRates, PriceOverrides, ToolCall, ToolDef, Usage
from ..llm.demo import DemoFailure, DemoModel, _Plan
from ..llm.events import END_TURN, TOOL_USE, CallEvent
from ..llm.model import PROVIDERS
from ..llm.options import CallOptions
from ..llm.tokens import estimate_messages, estimate_tokens

__all__ = [
    "Fail",
    "Reply",
    "ScriptExhausted",
    "ScriptedModel",
    "ScriptedPrices",
    "ScriptedRequest",
    "Step",
    "ToolUse",
]

PROVIDER = "scripted"
FREE = ModelRates(Decimal(0), Decimal(0))
_call_ids = itertools.count(1)


class ScriptExhausted(LLMError):
    """The model was called more times than its script has steps."""

    code = "script_exhausted"


@dataclass(frozen=True)
class ToolUse:
    """The model calls tool `name` with `arguments`."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """One model call's answer: `text`, then an optional `tool_call`. Tokens not given are
    estimated (input from the prompt, output from the text); `tokens_per_second` overrides
    the model's pace for this reply."""

    text: str = ""
    tool_call: ToolUse | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tokens_per_second: float | None = None


@dataclass(frozen=True)
class Fail:
    """The call fails with `error` after streaming `after_tokens` words of `text` (0: before
    any output). The error's `partial_text` is what was streamed."""

    error: LLMError
    after_tokens: int = 0
    text: str = ""


Step = str | Reply | ToolUse | Fail | LLMError


@dataclass(frozen=True)
class ScriptedRequest:
    """What one call was asked: for assertions on the prompt, history and tools."""

    messages: tuple[Message, ...]
    tools: tuple[ToolDef, ...]
    max_tokens: int


def _as_step(step: Step) -> Reply | Fail:
    if isinstance(step, str):
        return Reply(step)
    if isinstance(step, ToolUse):
        return Reply(tool_call=step)
    if isinstance(step, LLMError):
        return Fail(step)
    if isinstance(step, Reply | Fail):
        return step
    raise TypeError(f"a script step is text, Reply, ToolUse, Fail or an LLMError, not {step!r}")


def _rates(price: ModelRates | tuple[float, float] | None) -> ModelRates:
    if price is None:
        return FREE
    if isinstance(price, ModelRates):
        return price
    per_input, per_output = price
    return ModelRates(Decimal(str(per_input)), Decimal(str(per_output)))


class ScriptedModel(Model):
    """A model that answers from a script; see the module docstring."""

    provider = PROVIDER

    def __init__(
        self,
        steps: Iterable[Step],
        *,
        name: str = "scripted",
        price: ModelRates | tuple[float, float] | None = None,
        tokens_per_second: float = 0.0,
        loop: bool = False,
        context_window: int | None = None,
    ) -> None:
        super().__init__(name, context_window=context_window or 200_000)
        self.steps: list[Reply | Fail] = [_as_step(s) for s in steps]
        self.rates = _rates(price)
        self.tokens_per_second = tokens_per_second
        self.loop = loop
        self.requests: list[ScriptedRequest] = []
        _NAMED[name] = self

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _next(
        self, messages: Sequence[Message], tools: Sequence[ToolDef], max_tokens: int
    ) -> Reply | Fail:
        number = len(self.requests)
        self.requests.append(ScriptedRequest(tuple(messages), tuple(tools), max_tokens))
        if not self.steps:
            raise ScriptExhausted(
                f"ScriptedModel {self.name!r} has no script: make it before the call, "
                f"ScriptedModel([...], name={self.name!r})",
                provider=PROVIDER,
            )
        if number >= len(self.steps) and not self.loop:
            raise ScriptExhausted(
                f"ScriptedModel {self.name!r} was called {number + 1} times; its script has "
                f"{len(self.steps)} steps (pass loop=True to repeat it)",
                provider=PROVIDER,
            )
        return self.steps[number % len(self.steps)]

    async def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[CallEvent]:
        step = self._next(messages, options.tools, options.max_tokens)
        async for event in _StepCall(self, step).stream(messages, tools=options.tools):
            yield event


class _StepCall(DemoModel):
    """One call of a script: the demo model's streaming (pace, failures after n words, the
    tool call, the final usage) with the step's answer as its plan."""

    provider = PROVIDER

    def __init__(self, model: ScriptedModel, step: Reply | Fail) -> None:
        pace = model.tokens_per_second
        failure: DemoFailure | None = None
        if isinstance(step, Fail):
            error = copy.copy(step.error)
            error.provider = error.provider or PROVIDER
            failure = DemoFailure(error, step.after_tokens)
        elif step.tokens_per_second is not None:
            pace = step.tokens_per_second
        super().__init__(
            model.name,
            tokens_per_second=pace,
            fail_with=[failure],
            context_window=model.context_window,
        )
        self.step = step

    def _plan(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolDef],
        max_tokens: int,
        stop: Sequence[str] | None,
    ) -> _Plan:
        step = self.step
        words = re.findall(r"\S+\s*", step.text)
        call = step.tool_call if isinstance(step, Reply) else None
        tool_call = None
        if call is not None:
            call_id = call.id or f"call_scripted_{next(_call_ids)}"
            tool_call = ToolCall(call_id, call.name, dict(call.arguments))
        output = estimate_tokens(step.text)
        if tool_call is not None:
            output += estimate_tokens(tool_call.name + json.dumps(dict(tool_call.arguments)))
        given_input = step.input_tokens if isinstance(step, Reply) else None
        given_output = step.output_tokens if isinstance(step, Reply) else None
        usage = Usage(
            input_tokens=estimate_messages(messages, tools) if given_input is None else given_input,
            output_tokens=output if given_output is None else given_output,
        )
        return _Plan(words, tool_call, TOOL_USE if tool_call else END_TURN, usage)


# -- "scripted:NAME" and prices ----------------------------------------------------------------

_NAMED: dict[str, ScriptedModel] = {}


def named_model(name: str, **options: Any) -> ScriptedModel:
    """What `get_model("scripted:NAME")` returns: the latest ScriptedModel of that name, else
    one with no script (its calls fail, saying how to give it one)."""
    found = _NAMED.get(name)
    return found if found is not None else ScriptedModel([], name=name)


PROVIDERS.setdefault(PROVIDER, (__name__, "named_model"))


class ScriptedPrices(PriceOverrides):
    """Price overrides (those given, e.g. `$THREADLINE_PRICES`'s) that also price every
    ScriptedModel at its `price` (the latest of a name; free when none was given)."""

    def rates_for(self, provider: str, model: str) -> ModelRates | None:
        if provider == PROVIDER:
            found = _NAMED.get(model)
            return found.rates if found is not None else FREE
        return super().rates_for(provider, model)
