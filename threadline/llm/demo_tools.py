"""How the offline demo model uses tools: which tool the user's words ask for, the call (its
arguments from `demo_arguments`), and what it says of a tool's result (see `demo_replies`,
rules 1 and 2)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from .demo_arguments import arguments, code_like, find_codes
from .demo_passages import Passage
from .demo_text import content_words, stem
from .messages import Message, ToolCall, ToolDef

__all__ = ["after_tool", "tool_call"]


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_GENERIC_VERBS = _set(
    "get set fetch find check look make create list show do run call use give send"
)
_READ_VERBS = _set("get lookup look find check search fetch show list describe")
_SYNONYMS = {"buy": "order", "purchase": "order", "cost": "price", "much": "price"}
_SYNONYMS |= {"available": "stock", "availability": "stock", "forecast": "weather"}
_SYNONYMS |= {"look": "lookup", "search": "lookup"}


def _vocabulary(tool: ToolDef, shared: frozenset[str]) -> dict[str, int]:
    first = re.split(r"(?<=[.!?])\s", tool.description.strip(), maxsplit=1)[0]
    words = {w: 1 for w in content_words(first)}
    words |= {stem(w): 2 for w in re.split(r"[_\-\s]+", tool.name) if len(w) > 1}
    return {w: n for w, n in words.items() if w not in _GENERIC_VERBS and w not in shared}


def _choose_tool(
    text: str, tools: Sequence[ToolDef], passages: tuple[Passage, ...]
) -> ToolDef | None:
    said = {_SYNONYMS.get(w, w) for w in content_words(text)}
    own = [_vocabulary(t, frozenset()) for t in tools]
    shared = frozenset.intersection(*(frozenset(v) for v in own)) if len(own) > 1 else frozenset()
    codes = find_codes(text)
    best, best_score = None, 0
    for tool in tools:
        score = sum(n for w, n in _vocabulary(tool, shared).items() if w in said)
        if score > best_score and (score >= 2 or (codes and code_like(tool))):
            best, best_score = tool, score
    if best is not None or not codes:
        return best
    # Only a part code: look it up, unless the reference passages already say what it is.
    if any(code.upper() in passage.text.upper() for code in codes for passage in passages):
        return None
    return next((t for t in tools if code_like(t) and _reads(t)), None)


def _reads(tool: ToolDef) -> bool:
    """The tool's name starts with a verb that only reads (`lookup_part`, `get_weather`)."""
    return stem(re.split(r"[_\-]", tool.name)[0].lower()) in _READ_VERBS


def tool_call(
    text: str, tools: Sequence[ToolDef], messages: Sequence[Message], passages: tuple[Passage, ...]
) -> ToolCall | None:
    """The call of the tool `text` asks for, when its required arguments can be filled."""
    chosen = _choose_tool(text, tools, passages)
    if chosen is None:
        return None
    units = [unit for passage in passages for unit in passage.units]
    earlier = [  # what was said before, in order: to find the part spoken of last
        m.content
        if m.role == "user"
        else " ".join(json.dumps(dict(c.arguments)) for c in m.tool_calls)
        for m in messages[:-1]
        if m.role == "user" or m.tool_calls
    ]
    found = arguments(chosen, text, context=units, earlier=earlier)
    if found is None:
        return None
    number = 1 + sum(len(m.tool_calls) for m in messages)
    return ToolCall(f"demo_call_{number}", chosen.name, found)


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def after_tool(result: Message, messages: Sequence[Message]) -> str:
    """What the model says of a tool's result: what it returned, or why the call failed."""
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    name = result.tool_name or names.get(result.tool_call_id or "", "tool")
    content = result.content.strip()
    try:
        value = json.loads(content)
    except ValueError:
        value = content
    if isinstance(value, dict) and set(value) == {"error"}:
        return f"The {name} call did not go through: {_plain(value['error'])}."
    if isinstance(value, dict) and set(value) == {"result"}:
        value = value["result"]
    shown = _plain(value)
    shown = shown if len(shown) <= 300 else shown[:300] + "…"
    return f"The {name} tool returned: {shown}"
