"""What a model call produces: token usage, stream events and the final response.

Usage counts follow genai-prices' convention, so a `Usage` prices without translation:
`input_tokens` is *all* input, cached or not (it includes `cache_read_tokens` and
`cache_write_tokens`); `output_tokens` is all output, including `reasoning_tokens`.

Stop reasons are normalised to: "end_turn", "max_tokens", "tool_use", "stop_sequence"
(a provider's unknown reason passes through unchanged). A refusal or safety block is not a
stop reason: adapters raise `ContentFiltered` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, ClassVar

from .errors import StreamInterrupted
from .messages import Message, ToolCall, parse_arguments

__all__ = [
    "CallEvent",
    "Notice",
    "Response",
    "ResponseBuilder",
    "Restart",
    "StreamEnd",
    "StreamEvent",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "UsageEvent",
]

END_TURN = "end_turn"
MAX_TOKENS = "max_tokens"
TOOL_USE = "tool_use"
STOP_SEQUENCE = "stop_sequence"


@dataclass(frozen=True)
class Usage:
    """Tokens a call consumed (see the module docstring for what each count includes)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_json(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Usage:
        return cls(**{f.name: int(data.get(f.name) or 0) for f in fields(cls)})


@dataclass(frozen=True)
class TextDelta:
    """The next piece of the answer's text. `at`: when the model produced it (epoch
    seconds), where the model says (the demo model: when its pace was due, however late
    the process got to it); None: when it arrived, as far as anyone knows."""

    text: str
    at: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of tool call number `index`: `id` and `name` come with its first piece,
    `arguments_delta` is the next fragment of its JSON arguments."""

    index: int
    id: str | None
    name: str | None
    arguments_delta: str = ""


@dataclass(frozen=True)
class UsageEvent:
    """Usage known so far (cumulative), e.g. input tokens before the first text."""

    usage: Usage


@dataclass(frozen=True)
class StreamEnd:
    """Always the last event of a successful stream; `usage` is the final count. `cost_usd`
    is set by the layer that priced the call (`threadline.ledger.MeteredModel`; None: not
    priced, or no known price), `cached` by the cache when it served the answer; `provider`
    by a layer that knows which provider answered (under a fallback chain, not always the
    chain's first)."""

    stop_reason: str
    usage: Usage
    model: str | None = None
    cost_usd: Decimal | None = None
    cached: bool = False
    provider: str | None = None


StreamEvent = TextDelta | ToolCallDelta | UsageEvent | StreamEnd


@dataclass(frozen=True)
class Restart:
    """A stream failed after some of its text was passed on: discard what `model` said
    (`discarded_text`); the answer starts again (from the next model of a fallback chain)."""

    model: str
    reason: str
    discarded_text: str
    kind: ClassVar[str] = "message.restart"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "reason": self.reason, "discarded_text": self.discarded_text}


@dataclass(frozen=True)
class Notice:
    """What a layer wrapping a model tells about the call as it happens, in the stream: a
    fallback to another model, output capped by a budget, a budget threshold crossed.
    `event` is the layer's own object; it has a `kind` and a `to_json()`."""

    event: Any

    @property
    def kind(self) -> str:
        return str(self.event.kind)

    def to_json(self) -> dict[str, Any]:
        """The event as the run's log keeps it."""
        return {"kind": self.kind, "data": self.event.to_json()}


CallEvent = StreamEvent | Restart | Notice
"""What `Model.stream` yields: a provider's events, and those of the layers around it."""


@dataclass(frozen=True)
class Response:
    """A finished answer. `model` is the model id the provider reported; `cost_usd` what
    the call cost, as priced once by the layer that metered it (None: not metered, or no
    known price); `cached`: served by the cache; `notices`: what the layers around the model
    told while it ran (see `Notice`)."""

    text: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage
    stop_reason: str
    model: str
    provider: str
    cost_usd: Decimal | None = None
    cached: bool = False
    notices: tuple[Notice, ...] = field(default=(), compare=False)

    @property
    def message(self) -> Message:
        """The answer as an assistant message, to append to the history."""
        return Message.assistant(self.text, self.tool_calls)

    def to_json(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "tool_calls": [c.to_json() for c in self.tool_calls],
            "usage": self.usage.to_json(),
            "stop_reason": self.stop_reason,
            "model": self.model,
            "provider": self.provider,
            "cost_usd": None if self.cost_usd is None else str(self.cost_usd),
            "cached": self.cached,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Response:
        """A response as `to_json` wrote it (its notices are not kept: they are told once,
        as they happen)."""
        cost = data.get("cost_usd")
        return cls(
            text=str(data["text"]),
            tool_calls=tuple(ToolCall.from_json(c) for c in data.get("tool_calls") or ()),
            usage=Usage.from_json(data.get("usage") or {}),
            stop_reason=str(data["stop_reason"]),
            model=str(data["model"]),
            provider=str(data["provider"]),
            cost_usd=None if cost is None else Decimal(cost),
            cached=bool(data.get("cached", False)),
        )


@dataclass
class _PendingCall:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


class ResponseBuilder:
    """Collects stream events into the `Response` a plain call would have returned."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self._text: list[str] = []
        self._calls: dict[int, _PendingCall] = {}
        self.usage = Usage()
        self.end: StreamEnd | None = None
        self.notices: list[Notice] = []

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def arguments(self) -> str:
        """The tool calls' arguments received so far, one after the other (output too)."""
        return "".join(part for call in self._calls.values() for part in call.arguments)

    def add(self, event: CallEvent) -> None:
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self._calls.setdefault(event.index, _PendingCall())
            call.id = call.id or event.id
            call.name = call.name or event.name
            call.arguments.append(event.arguments_delta)
        elif isinstance(event, UsageEvent):
            self.usage = event.usage
        elif isinstance(event, StreamEnd):
            self.usage = event.usage
            self.end = event
        elif isinstance(event, Restart):  # what came before is discarded
            self._text.clear()
            self._calls.clear()
            self.usage, self.end = Usage(), None
        else:
            self.notices.append(event)

    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(
                id=call.id or f"call_{index}",
                name=call.name or "",
                arguments=parse_arguments("".join(call.arguments)),
            )
            for index, call in sorted(self._calls.items())
        )

    def build(self) -> Response:
        if self.end is None:
            raise StreamInterrupted(
                "the stream ended without its final event",
                provider=self.provider,
                partial_text=self.text,
            )
        return Response(
            text=self.text,
            tool_calls=self.tool_calls(),
            usage=self.end.usage,
            stop_reason=self.end.stop_reason,
            model=self.end.model or self.model,
            provider=self.end.provider or self.provider,
            cost_usd=self.end.cost_usd,
            cached=self.end.cached,
            notices=tuple(self.notices),
        )
