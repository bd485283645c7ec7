"""Conversation messages and tool definitions, the same for every provider.

Everything here is a frozen dataclass that round-trips through plain JSON (`to_json()` /
`from_json()`), because conversations and model responses are journaled as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import jsonschema

from .errors import InvalidToolSchema

__all__ = ["Message", "Role", "ToolCall", "ToolDef"]

Role = Literal["system", "user", "assistant", "tool"]
_ROLES: tuple[str, ...] = get_args(Role)

# The strictest of the providers' rules (Anthropic, OpenAI and Gemini all accept this).
_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ToolCall:
    """The model asks for tool `name` to run with `arguments` (a JSON object)."""

    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": dict(self.arguments)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolCall:
        return cls(id=str(data["id"]), name=str(data["name"]), arguments=dict(data["arguments"]))


@dataclass(frozen=True)
class Message:
    """One message of a conversation.

    `tool_calls` only on assistant messages; `tool_call_id` (and optionally `tool_name`, which
    Gemini and Ollama want and is otherwise looked up from the call) only on tool results.
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    tool_name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"message role must be one of {_ROLES}, not {self.role!r}")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool result needs the tool_call_id it answers")
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))

    @classmethod
    def system(cls, content: str) -> Message:
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: tuple[ToolCall, ...] = ()) -> Message:
        return cls("assistant", content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool_result(cls, tool_call_id: str, content: Any, *, name: str | None = None) -> Message:
        """The result of a tool call; anything that is not a string is sent as JSON."""
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        return cls("tool", text, tool_call_id=tool_call_id, tool_name=name)

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "content": self.content,
            "tool_calls": [call.to_json() for call in self.tool_calls],
            "tool_call_id": self.tool_call_id,
            "tool_name": self.tool_name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            role=cast(Role, data["role"]),
            content=str(data.get("content", "")),
            tool_calls=tuple(ToolCall.from_json(c) for c in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            tool_name=data.get("tool_name"),
        )


@dataclass(frozen=True)
class ToolDef:
    """A tool the model may call; `parameters` is the JSON Schema of its arguments object.

    The schema is checked on construction, so a broken tool fails where it is defined rather
    than as a provider's 400 at the first call.
    """

    name: str
    description: str
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def __post_init__(self) -> None:
        if not _TOOL_NAME.match(self.name):
            raise InvalidToolSchema(
                f"tool name {self.name!r} must be 1-64 letters, digits, '_' or '-', "
                "starting with a letter or '_'"
            )
        if not isinstance(self.parameters, Mapping):
            raise InvalidToolSchema(f"tool {self.name!r}: parameters must be a JSON object")
        try:
            jsonschema.Draft202012Validator.check_schema(dict(self.parameters))
        except jsonschema.SchemaError as exc:
            where = "/".join(str(p) for p in exc.path) or "(root)"
            raise InvalidToolSchema(
                f"tool {self.name!r}: parameters is not a valid JSON Schema at {where}: "
                f"{exc.message}"
            ) from None
        if self.parameters.get("type") != "object":
            raise InvalidToolSchema(
                f"tool {self.name!r}: parameters must describe an object "
                '({"type": "object", "properties": {...}}), '
                f"got type {self.parameters.get('type')!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolDef:
        return cls(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            parameters=dict(data["parameters"]),
        )


def tool_names_by_call_id(messages: Sequence[Message]) -> dict[str, str]:
    """Tool name of every tool call in a history, for APIs that name tool results."""
    return {call.id: call.name for m in messages for call in m.tool_calls}


def parse_arguments(raw: str) -> dict[str, Any]:
    """Tool-call arguments from a model's JSON text. Arguments that are not a JSON object are
    kept under `_raw_arguments`, so the tool layer can report the mistake back to the model."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_raw_arguments": raw}
    return value if isinstance(value, dict) else {"_raw_arguments": raw}
