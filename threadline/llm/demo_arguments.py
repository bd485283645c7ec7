"""How the offline demo model fills a tool's arguments from the user's message.

Each parameter is read by what its name says it holds: a part code (`code`, `part`, `sku`,
`*_id`), a place (`city`, `location`, …), a quantity (`quantity`, `count`, …), an e-mail
address, a date, one of its `enum` values, or free text (`query`, `text`, or any other
required string: the message itself). A parameter that cannot be read from the message is
left out when optional; when a required one cannot be read, the tool is not called."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .messages import ToolDef

__all__ = ["arguments", "code_like", "find_codes", "place", "quantity"]


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


_CODE = re.compile(r"\b[A-Z]{1,5}-?\d{2,}[A-Z0-9-]*\b")
_CODE_WORDS = frozenset({"code", "part", "sku", "id", "serial", "product", "item"})
_QUANTITY_WORDS = frozenset({"quantity", "qty", "count", "amount", "number", "copies", "units"})
_PLACE_WORDS = frozenset({"city", "location", "place", "town", "country", "destination"})
_PLACE_WORDS |= {"region", "where", "address"}
_DATE_WORDS = frozenset({"date", "day", "when"})
_NUMBER_TEXT = "zero one two three four five six seven eight nine ten eleven twelve"
_NUMBER_WORDS = {w: n for n, w in enumerate(_NUMBER_TEXT.split())}
_UNIT_AFTER = (
    r"(?!\s*(?:%|[.,:]\d|(?:v|w|bar|m|cm|mm|kg|l|ppm|eur|euros?|litres?|liters?|"
    r"minutes?|hours?|days?|weeks?|months?|years?|am|pm)\b))"
)
_QUANTITIES = [
    (re.compile(r"\b(?:x|×)\s*(\d+)\b|\b(\d+)\s*(?:x|×)(?=\s|$)", re.I), None),
    (re.compile(r"\b(?:quantity|qty|count)\s*(?:of|:|=)?\s*(\d+)\b", re.I), None),
    (re.compile(r"\bhalf a dozen\b", re.I), 6),
    (re.compile(r"\b(?:a|one) dozen\b", re.I), 12),
    (re.compile(r"\ba (?:pair|couple)\b", re.I), 2),
    (re.compile(r"(?<![€$£\d.,])\b(\d+)\b" + _UNIT_AFTER, re.I), None),
    (re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.I), None),
]
_PLACE_NAME = r"[A-Z][\w'’.-]*(?:\s+(?:(?:de|del|da|la|le|upon|on|am|sur)\s+)?[A-Z][\w'’.-]*)*"
_PLACE_AFTER = re.compile(r"\b(?:in|for|at|to|from|near|around)\s+(" + _PLACE_NAME + ")")
_PLACE_LOWER = re.compile(r"\b(?:in|for|at)\s+([a-z][a-z'-]{2,}(?:\s+[a-z][a-z'-]{2,}){0,2})\b")
_CAPITALISED = re.compile(r"\b" + _PLACE_NAME)
_NOT_PLACES = _set(
    """i a an the my me this that it today tomorrow tonight now next morning evening week
    weekend please can could would will what whats how is are do does tell show give get
    hi hello hey weather forecast temperature rain sun"""
)
_STOPWORDS = _set("and or but with for from to of on in at by the a an is are was be my your")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DATE = re.compile(
    r"\b(\d{4}-\d{2}-\d{2}|today|tomorrow|tonight|monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday)\b",
    re.I,
)


def find_codes(text: str) -> list[str]:
    """Part codes in a text, in order: `TL-4471`, `AB1234`."""
    return _CODE.findall(text)


def _name_words(name: str) -> set[str]:
    return {w for w in re.split(r"[_\W]+|(?<=[a-z])(?=[A-Z])", name.lower()) if w}


def _is_code(name: str) -> bool:
    words = _name_words(name)
    return bool(words & _CODE_WORDS) or (name.lower().endswith("number") and "of" not in words)


def code_like(tool: ToolDef) -> bool:
    """The tool takes a part code (a string parameter named like one)."""
    properties: Mapping[str, Any] = tool.parameters.get("properties") or {}
    return any(
        isinstance(s, Mapping) and s.get("type") == "string" and _is_code(n)
        for n, s in properties.items()
    )


def quantity(text: str) -> int | None:
    """How many the message asks for: "2", "two", "x3", "a pair of", "half a dozen"."""
    text = _CODE.sub(" ", text)
    found: list[tuple[int, int]] = []  # (position, value)
    for pattern, fixed in _QUANTITIES:
        if match := pattern.search(text):
            word = fixed if fixed is not None else next(g for g in match.groups() if g)
            value = word if isinstance(word, int) else _NUMBER_WORDS.get(word.lower())
            found.append((match.start(), value if value is not None else int(word)))
    return min(found)[1] if found else None


def place(text: str) -> str | None:
    """The place a message names: "weather for London?" -> "London"."""
    text = _CODE.sub(" ", text)
    for match in _PLACE_AFTER.finditer(text):
        if match.group(1).lower() not in _NOT_PLACES:
            return match.group(1).rstrip(".")
    for match in _PLACE_LOWER.finditer(text):  # "in new york today": up to a common word
        words = list(itertools.takewhile(_placelike, match.group(1).split()))
        if words:
            return " ".join(words).title()
    for match in _CAPITALISED.finditer(text):
        if match.group().lower().replace("'", "") not in _NOT_PLACES:
            return match.group().rstrip(".")
    return None


_INTENT = _set(
    """order buy purchase want need like yes please new another some more part code many much
    pair couple dozen half"""
) | set(_NUMBER_WORDS)


def _placelike(word: str) -> bool:
    return word not in _NOT_PLACES and word not in _STOPWORDS


def _words(text: str) -> set[str]:
    """The words that may name a part (crudely singular), without the asking."""
    found = {w.rstrip("s") for w in re.findall(r"[a-z]{3,}", text.lower())}
    return found - _NOT_PLACES - _INTENT


def _code_in(context: Sequence[str], text: str) -> str | None:
    """The code of the part the message names, from the reference passages' lines that
    hold a code ("two carbon blocks" -> "Carbon block: part TL-4472, …")."""
    wanted = _words(_CODE.sub(" ", text))
    best, score = None, 0
    for unit in context:
        codes = find_codes(unit)
        if len(codes) != 1 or len(unit.split()) > 12:  # a part list's line, not prose
            continue
        shared = len(wanted & _words(_CODE.sub(" ", unit)))
        if shared > score:
            best, score = codes[0], shared
    return best


def _value(
    name: str,
    schema: Mapping[str, Any],
    text: str,
    context: Sequence[str],
    earlier: Sequence[str],
    required: bool,
) -> Any:
    kind, words = schema.get("type"), _name_words(name)
    if enum := schema.get("enum"):
        return next((v for v in enum if str(v).lower() in text.lower()), None)
    if kind in ("integer", "number") and words & _QUANTITY_WORDS:
        return quantity(text)
    if kind == "string" and _is_code(name):
        if codes := find_codes(text):
            return codes[0]
        if found := _code_in(context, text):
            return found
        said = (codes for e in reversed(earlier) if (codes := find_codes(e)))
        return next(said, [None])[-1]  # the part spoken of last
    if kind == "string" and words & _PLACE_WORDS:
        return place(text)
    if kind == "string" and "email" in words:
        return match.group() if (match := _EMAIL.search(text)) else None
    if kind == "string" and words & _DATE_WORDS:
        return match.group().lower() if (match := _DATE.search(text)) else None
    if not required:
        return None
    if kind == "string":
        return text.strip()[:200]
    if kind in ("integer", "number"):
        number = re.search(r"-?\b\d+(?:\.\d+)?\b", _CODE.sub(" ", text))
        if number is None:
            return None
        return int(float(number.group())) if kind == "integer" else float(number.group())
    return False if kind == "boolean" else None


def arguments(
    tool: ToolDef, text: str, *, context: Sequence[str] = (), earlier: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The tool's arguments read from `text` (with the lines of reference passages and the
    earlier messages to find a part code in), or None when a required one is missing."""
    properties: Mapping[str, Any] = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    found: dict[str, Any] = {}
    for name, schema in properties.items():
        value = _value(
            name,
            schema if isinstance(schema, Mapping) else {},
            text,
            context,
            earlier,
            name in required,
        )
        if value is not None:
            found[name] = value
        elif name in required:
            return None
    return found
