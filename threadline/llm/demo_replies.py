"""What the offline demo model says: deterministic, and useful enough to try an app with.

In order of precedence, for the last message of the conversation:

1. After a tool result: it reports what the tool returned.
2. Tools given, and the user's words contain all the words of a tool's name (`lookup_part`
   -> "lookup" and "part"), or a part code such as `AB-1234` while the tool has a code-like
   parameter (`code`, `part`, `sku`, `id`, `number`): it calls that tool once (a tool named
   by the user's words wins), filling code-like string parameters with the code, numbers with
   the first other number in the text, and other required strings with the user's text.
3. The system prompt describes an interview (it says "interview", or has lines starting with
   "Ask" and lines ending in "?"): it thanks the user for the last answer and asks the first
   question of the system prompt that no assistant message has asked yet (a few generic
   questions when the prompt lists none); after the last one it sums up the answers.
4. Reference passages (the text after a "Context:", "Sources:", "References:", "Documents:"
   or "Knowledge:" line, or markdown sections) in the system prompt or the last user message:
   it answers with the (at most two) sentences sharing the most words with the user's
   question, each followed by its source label (a `[label]` the passage starts with, its
   markdown heading, or its number).
5. Otherwise: a short summary of what the user said, and how to get a real model.

Every answer starts with `LABEL`, so nobody takes it for a real model.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .messages import Message, ToolCall, ToolDef

__all__ = ["LABEL", "DemoReply", "compose_reply"]

LABEL = "[demo model] "

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][a-z]+)?")
_PART_CODE = re.compile(r"\b[A-Z]{1,5}-?\d{2,}[A-Z0-9-]*\b")
_NUMBER = re.compile(r"-?\b\d+(?:\.\d+)?\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_CONTEXT_HEADER = re.compile(
    r"^\s*(?:#+\s*)?(context|sources?|references?|documents?|knowledge)\s*(?::\s*(.*))?$",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s*#{1,6}\s+(.+?)\s*$")
_LABELLED = re.compile(r"^\s*\[([^\]]{1,80})\]\s*(.*)$", re.DOTALL)
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)]|Q\d+[:.)])\s*")
_CODE_HINTS = ("code", "part", "sku", "id", "number")
_STOPWORD_TEXT = """a about above after again all also am an and any are as at be because been
    before being between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself
    just me more most my no nor not now of off on once only or other our out over own same
    she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom
    why will with would you your yours please tell know want need"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_DEFAULT_QUESTIONS = (
    "What would you like to talk about first?",
    "Can you tell me more about that?",
    "What else should I know?",
)


@dataclass(frozen=True)
class DemoReply:
    text: str
    tool_call: ToolCall | None = None


@functools.lru_cache(maxsize=8192)
def _stem(word: str) -> str:
    """A crude stemmer, enough to match "parking" with "park" and "shipped" with "ship"."""
    word = word.lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    for suffix in ("ing", "ed"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            return word
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    return [_stem(w) for w in _WORD.findall(text) if len(w) > 2 and w.lower() not in _STOPWORDS]


@functools.lru_cache(maxsize=4096)
def _word_set(text: str) -> frozenset[str]:
    """`content_words` as a set, kept: a prompt's reference passages are scored again on
    every turn of every session that uses it."""
    return frozenset(content_words(text))


def _quote(text: str, words: int = 8) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + ("…" if len(parts) > words else "")


# -- tools ---------------------------------------------------------------------------------


def _arguments(tool: ToolDef, text: str, code: str | None) -> dict[str, Any]:
    properties: Mapping[str, Any] = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    number = _NUMBER.search(text.replace(code, " ") if code else text)
    arguments: dict[str, Any] = {}
    for name, schema in properties.items():
        kind = schema.get("type") if isinstance(schema, Mapping) else None
        code_like = any(hint in name.lower() for hint in _CODE_HINTS)
        if kind == "string" and code_like and code:
            arguments[name] = code
        elif kind in ("integer", "number") and number and (name in required or code_like):
            value = float(number.group())
            arguments[name] = int(value) if kind == "integer" else value
        elif name in required:
            if kind == "string":
                arguments[name] = text.strip()[:200]
            elif kind == "boolean":
                arguments[name] = False
            elif kind in ("integer", "number"):
                arguments[name] = 1
    return arguments


def _tool_call(text: str, tools: Sequence[ToolDef], messages: Sequence[Message]) -> ToolCall | None:
    words = set(content_words(text)) | {w.lower() for w in _WORD.findall(text)}
    code_match = _PART_CODE.search(text)
    code = code_match.group() if code_match else None

    def named(tool: ToolDef) -> bool:
        name_words = {_stem(w) for w in re.split(r"[_\-\s]+", tool.name) if w}
        return bool(name_words) and name_words <= words

    def takes_code(tool: ToolDef) -> bool:
        properties = tool.parameters.get("properties") or {}
        return any(hint in str(p).lower() for p in properties for hint in _CODE_HINTS)

    # A tool named by the user's words first, then one that takes the code they mention.
    chosen = next((t for t in tools if named(t)), None)
    if chosen is None and code:
        chosen = next((t for t in tools if takes_code(t)), None)
    if chosen is None:
        return None
    number = 1 + sum(len(m.tool_calls) for m in messages)
    return ToolCall(f"demo_call_{number}", chosen.name, _arguments(chosen, text, code))


def _after_tool(result: Message, messages: Sequence[Message]) -> DemoReply:
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    name = result.tool_name or names.get(result.tool_call_id or "", "tool")
    content = result.content.strip()
    shown = content if len(content) <= 300 else content[:300] + "…"
    return DemoReply(f"{LABEL}The {name} tool returned: {shown}")


# -- interview -----------------------------------------------------------------------------


def _questions(system: str) -> list[str]:
    found = []
    for line in system.splitlines():
        line = _LIST_MARKER.sub("", line).strip()
        line = re.sub(r"^ask\s*:\s*", "", line, flags=re.IGNORECASE)
        if line.endswith("?") and len(line) > 3:
            found.append(line)
    return found


@functools.lru_cache(maxsize=256)
def is_interview(system: str) -> bool:
    if re.search(r"\binterview", system, re.IGNORECASE):
        return True
    asks = re.search(r"^\s*(?:[-*•]|\d+[.)])?\s*ask\b", system, re.IGNORECASE | re.MULTILINE)
    return bool(asks and _questions(system))


def _interview(system: str, messages: Sequence[Message]) -> DemoReply:
    questions = _questions(system) or list(_DEFAULT_QUESTIONS)
    asked = " ".join(m.content.lower() for m in messages if m.role == "assistant")
    remaining = [q for q in questions if q.lower() not in asked]
    answers = [m.content for m in messages if m.role == "user"]
    has_asked = any(m.role == "assistant" for m in messages)
    if has_asked and answers:
        opening = f"Thank you for sharing that (“{_quote(answers[-1])}”)."
    else:
        opening = "Welcome! Let's begin."
    if remaining:
        return DemoReply(f"{LABEL}{opening} {remaining[0]}")
    summary = " ".join(f"({n}) {_quote(a)}" for n, a in enumerate(answers[-len(questions) :], 1))
    return DemoReply(
        f"{LABEL}{opening} That was my last question. Here is what you told me: {summary}"
    )


# -- reference passages --------------------------------------------------------------------


def _split_passages(block: str, default_label: str | None = None) -> tuple[tuple[str, str], ...]:
    passages: list[tuple[str, str]] = []
    heading = default_label
    chunk: list[str] = []

    def flush() -> None:
        text = " ".join(chunk).strip()
        chunk.clear()
        if not text:
            return
        labelled = _LABELLED.match(text)
        if labelled:
            passages.append((labelled.group(1).strip(), labelled.group(2).strip()))
        else:
            passages.append((heading or str(len(passages) + 1), text))

    for line in block.splitlines():
        if match := _HEADING.match(line):
            flush()
            heading = match.group(1)
        elif not line.strip() or _LABELLED.match(line):
            flush()
            chunk.append(line.strip())
        else:
            chunk.append(_LIST_MARKER.sub("", line).strip())
    flush()
    return tuple((label, text) for label, text in passages if text)


@functools.lru_cache(maxsize=256)
def find_passages(text: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """(label, passage) pairs in a text, and the text with the passages taken out (kept: a
    system prompt's passages are the same on every turn)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if match := _CONTEXT_HEADER.match(line):
            block = "\n".join([match.group(2) or "", *lines[index + 1 :]])
            return _split_passages(block), "\n".join(lines[:index])
    if any(_HEADING.match(line) for line in lines):
        return _split_passages(text), ""
    return (), text


@functools.lru_cache(maxsize=256)
def _sentences(passages: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """(label, sentence) for each sentence of the passages."""
    return tuple(
        (label, sentence)
        for label, text in passages
        for sentence in _SENTENCE_END.split(text)
        if sentence.strip()
    )


def _answer_from(passages: tuple[tuple[str, str], ...], question: str) -> DemoReply:
    wanted = set(content_words(question))
    scored = []
    for position, (label, passage) in enumerate(_sentences(passages)):
        score = len(wanted & _word_set(passage))
        if score:
            scored.append((-score, position, label, passage.strip()))
    if not scored:
        topics = ", ".join(dict.fromkeys(label for label, _ in passages))
        return DemoReply(
            f"{LABEL}I could not find that in the provided context. It covers: {topics}."
        )
    best = sorted(scored)[:2]
    cited = " ".join(f"{sentence} [{label}]" for _, _, label, sentence in best)
    return DemoReply(f"{LABEL}From the provided context: {cited}")


# -- everything else -----------------------------------------------------------------------


def _echo(text: str) -> DemoReply:
    if not text.strip():
        return DemoReply(f"{LABEL}Hello! I am the offline demo model. Ask me anything.")
    keywords = [w for w, _ in Counter(content_words(text)).most_common(5)]
    about = f" Key words: {', '.join(keywords)}." if keywords else ""
    return DemoReply(
        f"{LABEL}You said: “{_quote(text, 25)}”.{about} I am an offline demo model, so I can "
        "only summarise; set a provider key such as ANTHROPIC_API_KEY for real answers."
    )


def compose_reply(messages: Sequence[Message], tools: Sequence[ToolDef] = ()) -> DemoReply:
    """The demo model's answer to a conversation (see the module docstring)."""
    if messages and messages[-1].role == "tool":
        return _after_tool(messages[-1], messages)
    system = "\n".join(m.content for m in messages if m.role == "system")
    user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    last_is_user = bool(messages) and messages[-1].role == "user"
    if tools and last_is_user and (call := _tool_call(user, tools, messages)):
        return DemoReply(f"{LABEL}Let me check that with the {call.name} tool.", call)
    if is_interview(system):
        return _interview(system, messages)
    passages, question = find_passages(user)
    if not passages:
        passages, _ = find_passages(system)
        question = user
    if passages:
        return _answer_from(passages, question or user)
    return _echo(user)
