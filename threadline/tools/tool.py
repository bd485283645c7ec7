"""`@tool`: a typed function becomes a tool. Its JSON Schema comes from the type hints (via
pydantic), its description and parameter descriptions from the docstring (`Args:` section);
arguments from the model are validated before the function runs."""

from __future__ import annotations

import inspect
import json
import re
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

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
    arguments: type[BaseModel] | None = field(default=None, repr=False, compare=False)
    timeout: float | None = None  # seconds one attempt may take (then it fails)
    retries: int = 0  # attempts after a failed one (with backoff), in a turn's workflow

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"tool {self.name}: timeout must be a positive number of seconds")
        if self.retries < 0:
            raise ValueError(f"tool {self.name}: retries must be 0 or more")

    @property
    def definition(self) -> ToolDef:
        return ToolDef(self.name, self.description, self.schema)

    async def run(self, arguments: Mapping[str, Any]) -> Any:
        """Validate `arguments` against the signature, call the function, return its result
        (JSON-serialisable)."""
        model = self.arguments or arguments_model(self.fn)
        try:  # validates (and coerces) the arguments against the signature
            values = model.model_validate(dict(arguments))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(map(str, error["loc"]))
            detail = f"{where}: {error['msg']}" if where else error["msg"]
            raise ToolError(f"bad arguments for {self.name}: {detail}") from None
        result = self.fn(**{name: values.__dict__[name] for name in type(values).model_fields})
        result = await result if inspect.isawaitable(result) else result
        json.dumps(result)  # a result the model cannot read is a bug in the tool: fail here
        return result

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        confirm: bool = False,
        timeout: float | None = None,
        retries: int = 0,
    ) -> Tool:
        doc = inspect.getdoc(fn) or ""
        summary, params = _parse_docstring(doc)
        model = arguments_model(fn)
        schema = model.model_json_schema()
        for name, prop in schema.get("properties", {}).items():
            prop.pop("title", None)
            if name in params:
                prop["description"] = params[name]
        schema.pop("title", None)
        return cls(
            fn.__name__, summary or fn.__name__, fn, schema, confirm, model, timeout, retries
        )


def arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of `fn`'s keyword arguments: their types, defaults, and no others
    (`additionalProperties: false` in the schema), so the model's JSON is checked before the
    function runs."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
            raise ToolError(f"tool {fn.__name__}: parameter {param.name} must be named (no *args)")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    config = ConfigDict(extra="forbid", protected_namespaces=())
    with warnings.catch_warnings():  # a parameter named like a BaseModel method is fine here
        warnings.filterwarnings("ignore", "Field name .* shadows", UserWarning)
        return create_model(fn.__name__, __config__=config, **fields)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, confirm: bool = False, timeout: float | None = None, retries: int = 0
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    *,
    confirm: bool = False,
    timeout: float | None = None,
    retries: int = 0,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """`@tool` or `@tool(confirm=True, timeout=10, retries=2)` over a typed function.
    `confirm`: each call waits for the user's approval; `timeout`: seconds an attempt may
    take; `retries`: attempts after a failure (a turn reports the tool failed after the last)."""
    if fn is not None:
        return Tool.from_function(fn)
    return lambda f: Tool.from_function(f, confirm=confirm, timeout=timeout, retries=retries)


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
