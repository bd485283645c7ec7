"""Record a conversation with a real provider once, replay it in tests for ever.

A `Cassette` is a JSON file of model calls: each call's request (messages, tools, options),
the events its stream produced (text, tool-call pieces, usage, the final count) and how it
ended. `RecordingModel` wraps a real model and writes each call to the cassette;
`ReplayModel` answers from it, matching a call by a hash of its model, messages and tools,
and streams the recorded events with the recorded usage. The replayed calls have the
recorded provider, model and usage, so pricing, budgets and the ledger see the same figures
as the recorded run. A call the cassette does not have raises `CassetteMiss`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..llm import (
    CallEvent,
    CallOptions,
    LLMError,
    Message,
    Model,
    Notice,
    Response,
    Restart,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolDef,
    Usage,
    UsageEvent,
    error_from_json,
)

__all__ = ["Cassette", "CassetteMiss", "Mode", "RecordingModel", "ReplayModel", "request_key"]

Mode = Literal["record", "replay"]
VERSION = 1


class CassetteMiss(LLMError):
    """A replayed test made a model call its cassette did not record."""

    code = "cassette_miss"


def request_key(spec: str, messages: Sequence[Message], tools: Sequence[ToolDef]) -> str:
    """What a recorded call is found by: a hash of its model, messages and tools."""
    body = {
        "model": spec,
        "messages": [m.to_json() for m in messages],
        "tools": [t.to_json() for t in tools],
    }
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def event_json(event: StreamEvent) -> dict[str, Any]:
    if isinstance(event, TextDelta):
        return {"type": "text", "text": event.text}
    if isinstance(event, ToolCallDelta):
        return {
            "type": "tool_call",
            "index": event.index,
            "id": event.id,
            "name": event.name,
            "arguments": event.arguments_delta,
        }
    if isinstance(event, UsageEvent):
        return {"type": "usage", "usage": event.usage.to_json()}
    return {
        "type": "end",
        "stop_reason": event.stop_reason,
        "usage": event.usage.to_json(),
        "model": event.model,
    }


def event_from_json(data: Mapping[str, Any]) -> StreamEvent:
    kind = data["type"]
    if kind == "text":
        return TextDelta(str(data["text"]))
    if kind == "tool_call":
        return ToolCallDelta(int(data["index"]), data["id"], data["name"], str(data["arguments"]))
    if kind == "usage":
        return UsageEvent(Usage.from_json(data["usage"]))
    return StreamEnd(str(data["stop_reason"]), Usage.from_json(data["usage"]), data.get("model"))


def response_events(response: Response) -> list[StreamEvent]:
    """A plain call's answer as the events a stream of it would have had."""
    events: list[StreamEvent] = [TextDelta(response.text)] if response.text else []
    for index, call in enumerate(response.tool_calls):
        events.append(ToolCallDelta(index, call.id, call.name, json.dumps(dict(call.arguments))))
    events.append(StreamEnd(response.stop_reason, response.usage, response.model))
    return events


@dataclass
class Cassette:
    """The calls of one test, in `path`. In "record" mode each call is written to it as it
    ends (the file starts afresh); in "replay" mode it is read (it must exist)."""

    path: Path
    mode: Mode = "replay"
    interactions: list[dict[str, Any]] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    _unplayed: dict[str, deque[dict[str, Any]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if self.mode == "replay":
            if not self.path.exists():
                raise FileNotFoundError(
                    f"no cassette at {self.path}: record it once with "
                    "`pytest --threadline-record` (or THREADLINE_RECORD=1)"
                )
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.interactions = list(data.get("interactions", []))
            queues: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
            for interaction in self.interactions:
                queues[interaction["key"]].append(interaction)
            self._unplayed = dict(queues)

    @property
    def recording(self) -> bool:
        return self.mode == "record"

    def wrap(self, model: Model) -> Model:
        """`model` recording to this cassette, or its replay."""
        if self.recording:
            return RecordingModel(model, self)
        return ReplayModel(model.provider, model.name, self)

    def add(self, interaction: dict[str, Any]) -> None:
        """Record a call (written at once: a test that fails later keeps what it recorded)."""
        self.interactions.append(interaction)
        self.save()

    def take(self, key: str, spec: str, messages: Sequence[Message]) -> dict[str, Any]:
        """The next recorded call with this key, or `CassetteMiss`."""
        queue = self._unplayed.get(key)
        if queue:
            return queue.popleft()
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        message = (
            f"the cassette {self.path} has no (more) calls of {spec} for this request "
            f"(key {key}, last user message {last_user[:80]!r}); re-record it with "
            "`pytest --threadline-record`"
        )
        self.misses.append(message)
        raise CassetteMiss(message, provider=spec.partition(":")[0])

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = {"version": VERSION, "interactions": self.interactions}
        text = json.dumps(body, indent=2, ensure_ascii=False, sort_keys=True)
        self.path.write_text(text + "\n", encoding="utf-8")


class RecordingModel(Model):
    """A real model whose every call goes to a cassette as well as to the caller."""

    def __init__(self, model: Model, cassette: Cassette) -> None:
        self.provider = model.provider
        super().__init__(model.name, context_window=model.context_window)
        self.inner = model
        self.cassette = cassette

    def _record(
        self,
        messages: Sequence[Message],
        options: CallOptions,
        events: list[StreamEvent],
        error: LLMError | None,
    ) -> None:
        tools = options.tools
        request = {
            "messages": [m.to_json() for m in messages],
            "tools": [t.to_json() for t in tools],
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "stop": list(options.stop) if options.stop else None,
        }
        self.cassette.add(
            {
                "key": request_key(self.spec, messages, tools),
                "model": self.spec,
                "request": request,
                "events": [event_json(e) for e in events],
                "error": error.to_json() if error is not None else None,
            }
        )

    async def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[CallEvent]:
        events: list[StreamEvent] = []
        try:
            async for event in self.inner.stream(messages, options):
                if not isinstance(event, (Restart, Notice)):  # a provider's events only
                    events.append(event)
                yield event
        except LLMError as exc:
            self._record(messages, options, events, exc)
            raise
        self._record(messages, options, events, None)

    async def _request(self, messages: Sequence[Message], options: CallOptions) -> Response:
        try:
            response = await self.inner.request(messages, options)
        except LLMError as exc:
            self._record(messages, options, [], exc)
            raise
        self._record(messages, options, response_events(response), None)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class ReplayModel(Model):
    """Answers from a cassette as `provider:name` answered when it was recorded."""

    def __init__(self, provider: str, name: str, cassette: Cassette) -> None:
        self.provider = provider
        super().__init__(name)
        self.cassette = cassette

    async def _stream(
        self, messages: Sequence[Message], options: CallOptions
    ) -> AsyncIterator[StreamEvent]:
        key = request_key(self.spec, messages, options.tools)
        recorded = self.cassette.take(key, self.spec, messages)
        for data in recorded["events"]:
            yield event_from_json(data)
        if recorded.get("error"):
            raise error_from_json(recorded["error"])
