"""`@tool`: a typed function becomes a tool. Its JSON Schema comes from the type hints (via
pydantic), its description and parameter descriptions from the docstring (`Args:` section);
arguments from the model are validated before the function runs."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from pydantic import TypeAdapter, ValidationError

from ..errors import ThreadlineError
from ..llm import ToolDef


class ToolError(ThreadlineError):
    """A tool call the model made could not run (unknown tool, bad arguments)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    fn: Callable[..., Any]
    schema: dict[str, Any]
    confirm: bool = False  # an operator or the user must approve each call first
    adapter: TypeAdapter[Any] | None = field(default=None, repr=False, compare=False)

    @property
    def definition(self) -> ToolDef:
        return ToolDef(self.name, self.description, self.schema)

    async def run(self, arguments: Mapping[str, Any]) -> Any:
        """Validate `arguments` against the signature, call the function, return its result
        (JSON-serialisable)."""
        adapter = self.adapter or TypeAdapter(self.fn)
        try:
            # Validates (and coerces) the arguments against the signature, then calls.
            bound: Any = adapter.validate_python(dict(arguments))
        except ValidationError as exc:
            raise ToolError(f"bad arguments for {self.name}: {exc.errors()[0]['msg']}") from None
        result = await bound if inspect.isawaitable(bound) else bound
        json.dumps(result)  # a result the model cannot read is a bug in the tool: fail here
        return result

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, confirm: bool = False) -> Tool:
        doc = inspect.getdoc(fn) or ""
        summary, params = _parse_docstring(doc)
        adapter: TypeAdapter[Any] = TypeAdapter(fn)
        schema = adapter.json_schema()
        for name, prop in schema.get("properties", {}).items():
            prop.pop("title", None)
            if name in params:
                prop["description"] = params[name]
        schema.pop("title", None)
        return cls(fn.__name__, summary or fn.__name__, fn, schema, confirm, adapter)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(*, confirm: bool = False) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None, *, confirm: bool = False
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """`@tool` or `@tool(confirm=True)` over a typed function."""
    if fn is not None:
        return Tool.from_function(fn)
    return lambda f: Tool.from_function(f, confirm=confirm)


_ARG = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and `name: description` lines of a Google-style Args section."""
    summary = doc.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            match = _ARG.match(line)
            if match:
                params[match[1]] = match[2].strip()
            elif line.strip() and not line.startswith(" "):
                in_args = False
    return summary, params
