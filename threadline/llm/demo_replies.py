"""What the offline demo model says: deterministic, and good enough to show an app with.

In order of precedence, for the last message of the conversation:

1. After a tool result: it reports what the tool returned (or why the call failed).
2. Tools given: it calls the tool the user's words ask for (its name's words count twice, its
   description's once; generic verbs like "get" and words every tool shares count nothing),
   once per user message, and only when it can fill the tool's required arguments from the
   message: part codes (`TL-4471`) for code-like parameters (or the code of the part the
   message names in the reference passages, or one said earlier), places ("weather for
   London" -> `London`) for `city`/`location`-like ones, quantities ("two", "2", "x3", "a
   pair of", "a dozen") for `quantity`-like numbers, enum values, e-mail addresses and dates
   the message mentions, and the message itself for free text. A message that only gives a
   part code calls a read-only tool (`lookup_…`, `get_…`) that takes one, unless the
   reference passages already mention the code.
3. The system prompt describes an interview (it says "interview", or has "Ask" lines and
   questions): it thanks the user for their last answer, copies any list the prompt says to
   propose or read back ("Propose this outline:", "Read back:"), and asks the question of an
   `Ask next:` / `Then ask:` line, else the first question of the prompt not asked yet. With
   none left it sums up every answer once ("That was my last question"), and after that
   asks whether there is anything to add.
4. Reference passages (after a "Context:", "Sources:", "References:", "Documents:" or
   "Knowledge:" line, or markdown sections), in the system prompt or the last user message:
   numbered ones (`[1] label` then text, as `format_context` writes them) are ranked, and it
   answers from the first, with the sentences, list items or table rows that best match the
   question (those naming an identifier the question asks about, like `E7`, first), cited as
   `[1]`; unnumbered ones are searched for the best match. When the passage shares no word or
   identifier with the question, or the context block is empty, it says it could not find
   the answer and offers a human (`NOT_FOUND`).
5. Otherwise: a short summary of what the user said, and how to get a real model.

Every answer starts with `LABEL`, so nobody takes it for a real model.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .demo_arguments import arguments, code_like, find_codes
from .messages import Message, ToolCall, ToolDef

__all__ = ["LABEL", "NOT_FOUND", "DemoReply", "compose_reply", "content_words"]

LABEL = "[demo model] "
NOT_FOUND = (
    "I couldn't find an answer to that in the documents I have. Would you like me to pass "
    "your question to a colleague?"
)

_WORD = re.compile(r"[A-Za-z0-9]+(?:[-'’][A-Za-z0-9]+)*")
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[-.][A-Za-z0-9]+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_CONTEXT_HEADER = re.compile(
    r"^\s*(?:#+\s*)?(context|sources?|references?|documents?|knowledge)\s*(?::\s*(.*))?$",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^\s*#{1,6}\s+(.+?)\s*$")
_LABELLED = re.compile(r"^\s*\[([^\]]{1,80})\]\s*(.*)$")
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)]|Q\d+[:.)])\s+")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}")
_ASK_LINE = re.compile(r"^\s*(?:ask next|next question|then ask)\s*:\s*(.+?)\s*$", re.I | re.M)
_READ_BACK = re.compile(r"^\s*(?:propose|read back|present|show)\b[^\n]*:\s*$", re.I)
_STOPWORD_TEXT = """a about above after again all also am an and any are as at be because been
    before being between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself
    just me more most my no nor not now of off on once only or other our out over own same
    she should so some such than that the their them then there these they this those
    through to too under until up very was we were what when where which while who whom
    why will with would you your yours please tell know want need"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


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
    """The stemmed words of a text that carry meaning (no stopwords, no one-letter words)."""
    return [_stem(w) for w in _WORD.findall(text) if len(w) > 1 and w.lower() not in _STOPWORDS]


# Everyday words for what documents name otherwise: a question's words also match these.
_RELATED = {
    "heavy": "weight", "weigh": "weight", "big": "size", "large": "size", "dimension": "size",
    "guarantee": "warranty", "tap": "faucet", "hose": "tube", "swap": "replace",
    "change": "replace", "refund": "return", "electricity": "power",
}  # fmt: skip


def _question_words(text: str) -> frozenset[str]:
    words = content_words(text)
    return frozenset(words + [_RELATED[w] for w in words if w in _RELATED])


@functools.lru_cache(maxsize=4096)
def _word_set(text: str) -> frozenset[str]:
    """`content_words` as a set, kept: a prompt's reference passages are scored again on
    every turn of every session that uses it."""
    return frozenset(content_words(text))


@functools.lru_cache(maxsize=4096)
def identifiers(text: str) -> frozenset[str]:
    """Words with a letter and a digit (`E7`, `TL-4471`, `v1.2`), upper-cased."""
    return frozenset(
        w.upper()
        for w in _TOKEN.findall(text)
        if any(c.isdigit() for c in w) and any(c.isalpha() for c in w)
    )


def _quote(text: str, words: int = 8) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + ("…" if len(parts) > words else "")


# -- tools ---------------------------------------------------------------------------------

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
    words |= {_stem(w): 2 for w in re.split(r"[_\-\s]+", tool.name) if len(w) > 1}
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
    return _stem(re.split(r"[_\-]", tool.name)[0].lower()) in _READ_VERBS


def _tool_call(
    text: str, tools: Sequence[ToolDef], messages: Sequence[Message], passages: tuple[Passage, ...]
) -> ToolCall | None:
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


def _after_tool(result: Message, messages: Sequence[Message]) -> DemoReply:
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    name = result.tool_name or names.get(result.tool_call_id or "", "tool")
    content = result.content.strip()
    try:
        value = json.loads(content)
    except ValueError:
        value = content
    if isinstance(value, dict) and set(value) == {"error"}:
        return DemoReply(f"{LABEL}The {name} call did not go through: {_plain(value['error'])}.")
    if isinstance(value, dict) and set(value) == {"result"}:
        value = value["result"]
    shown = _plain(value)
    shown = shown if len(shown) <= 300 else shown[:300] + "…"
    return DemoReply(f"{LABEL}The {name} tool returned: {shown}")


# -- interview -----------------------------------------------------------------------------


def _questions(system: str) -> list[str]:
    found = []
    for line in system.splitlines():
        line = _LIST_MARKER.sub("", line).strip()
        line = re.sub(r"^(?:ask|ask next|then ask|next question)\s*:\s*", "", line, flags=re.I)
        if line.endswith("?") and len(line) > 3:
            found.append(line)
    return found


@functools.lru_cache(maxsize=256)
def is_interview(system: str) -> bool:
    if re.search(r"\binterview", system, re.IGNORECASE):
        return True
    asks = re.search(r"^\s*(?:[-*•]|\d+[.)])?\s*ask\b", system, re.IGNORECASE | re.MULTILINE)
    return bool(asks and _questions(system))


def _read_back(system: str) -> str:
    """The list lines under a "Propose …:" / "Read back:" line, to say as they are."""
    lines, taking = [], False
    for line in system.splitlines():
        if _READ_BACK.match(line):
            taking = True
            proposes = line.strip().lower().startswith("propose")
            lines.append("Here is what I propose:" if proposes else "Here it is:")
        elif taking and line.strip() and not _ASK_LINE.match(line):
            lines.append(line.rstrip())
        elif taking and len(lines) > 1:
            break
    return lines[0] + "\n\n" + "\n".join(lines[1:]) if len(lines) > 1 else ""


def _interview(system: str, messages: Sequence[Message]) -> DemoReply:
    said = [m.content for m in messages if m.role == "assistant"]
    asked = " ".join(said).lower()
    first_question = next((i for i, m in enumerate(messages) if m.role == "assistant"), None)
    answers = [
        m.content
        for i, m in enumerate(messages)
        if m.role == "user" and first_question is not None and i > first_question
    ]
    opening = f"Thank you for sharing that (“{_quote(answers[-1])}”)." if answers else ""
    opening = opening or "Welcome! Let's begin."
    listing = _read_back(system)
    explicit = _ASK_LINE.findall(system)
    if explicit:
        question = explicit[-1]
    else:
        question = next((q for q in _questions(system) if q.lower() not in asked), "")
    if question:
        middle = f"\n\n{listing}\n\n" if listing else " "
        return DemoReply(f"{LABEL}{opening}{middle}{question}")
    if "that was my last question" in asked:
        return DemoReply(f"{LABEL}{opening} Is there anything you would like to add?")
    summary = " ".join(f"({n}) {_quote(a)}" for n, a in enumerate(answers, 1))
    return DemoReply(
        f"{LABEL}{opening} That was my last question. Here is what you told me: {summary}"
    )


# -- reference passages --------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    label: str  # how to cite it: "1", "returns", a heading
    title: str  # the heading or source line of a numbered passage
    units: tuple[str, ...]  # sentences, list items and table rows, in order

    @property
    def numbered(self) -> bool:
        return self.label.isdigit()

    @property
    def text(self) -> str:
        return " ".join((self.title, *self.units))


def _units(lines: list[str]) -> tuple[str, ...]:
    """A passage's lines as the pieces an answer quotes: sentences of its paragraphs, its
    list items, and its table rows (as "first cell: header value, …")."""
    units: list[str] = []
    paragraph: list[str] = []
    header: list[str] = []
    in_item = False  # the last line was (part of) a list item

    def flush() -> None:
        text = " ".join(paragraph).strip()
        paragraph.clear()
        units.extend(s.strip() for s in _SENTENCE_END.split(text) if s.strip())

    for line in lines:
        stripped = line.strip()
        if stripped.startswith("|"):
            flush()
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if _TABLE_RULE.match(stripped):
                continue
            if not header:
                header = cells
                continue
            pairs = [f"{h.lower()} {c}" for h, c in zip(header[1:], cells[1:], strict=False)]
            units.append(f"{cells[0]}: {', '.join(pairs)}." if pairs else cells[0])
            continue
        header = []
        if _LIST_MARKER.match(line):
            flush()
            units.append(_LIST_MARKER.sub("", line).strip())
            in_item = True
        elif not stripped:
            flush()
            in_item = False
        elif in_item and line[:1].isspace():  # a list item's next line
            units[-1] += " " + stripped
        else:
            paragraph.append(stripped)
            in_item = False
    flush()
    return tuple(units)


def _split_passages(block: str) -> tuple[Passage, ...]:
    """Passages: `[n] title` then text (numbered, as retrieval writes them), `[label] text`,
    or markdown sections; text with none of these is one passage."""
    passages: list[Passage] = []
    label, title = "", ""  # of the passage being read
    lines: list[str] = []

    def flush() -> None:
        units = _units(lines) or (_units([title]) if label.isdigit() else ())
        if units:
            passages.append(Passage(label or str(len(passages) + 1), title, units))
        lines.clear()

    for line in block.splitlines():
        if heading := _HEADING.match(line):
            flush()
            label = title = heading.group(1)
        elif labelled := _LABELLED.match(line):
            flush()
            label, rest = labelled.group(1).strip(), labelled.group(2).strip()
            title = rest if label.isdigit() else label  # `[returns] Items can be…`: text
            lines.append("" if label.isdigit() else rest)
        else:
            lines.append(line)
    flush()
    return tuple(passages)


@functools.lru_cache(maxsize=256)
def find_passages(text: str) -> tuple[tuple[Passage, ...], str]:
    """The passages in a text, and the text with the passages taken out (kept: a system
    prompt's passages are the same on every turn)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if match := _CONTEXT_HEADER.match(line):
            block = "\n".join([match.group(2) or "", *lines[index + 1 :]])
            return _split_passages(block), "\n".join(lines[:index])
    if any(_HEADING.match(line) for line in lines):
        return _split_passages(text), ""
    return (), text


def _score(unit: str, wanted: frozenset[str], ids: frozenset[str]) -> int:
    return len(wanted & _word_set(unit)) + 3 * len(ids & identifiers(unit))


def _relevant(passage: Passage, wanted: frozenset[str], ids: frozenset[str]) -> bool:
    return bool(wanted & _word_set(passage.text)) or bool(ids & identifiers(passage.text))


def _answer_from(passages: tuple[Passage, ...], question: str) -> DemoReply:
    wanted, ids = _question_words(question), identifiers(question)
    if all(p.numbered for p in passages):
        chosen = passages[0]  # ranked by retrieval: the first is the best it found
    else:
        chosen = max(
            passages, key=lambda p: max((_score(u, wanted, ids) for u in p.units), default=0)
        )
    if not chosen.units or not _relevant(chosen, wanted, ids):
        return DemoReply(f"{LABEL}{NOT_FOUND}")
    scores = [_score(u, wanted, ids) for u in chosen.units]
    if ids and any(ids & identifiers(u) for u in chosen.units):  # E7 asked: not E1's line
        scores = [
            s if ids & identifiers(u) else 0 for s, u in zip(scores, chosen.units, strict=True)
        ]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    picked = [best]
    if scores[best] == 0:  # the passage is on topic but words differ: its opening says it
        picked = list(range(min(2, len(chosen.units))))
    else:
        covered = _word_set(chosen.units[best])
        extra = [
            i
            for i in range(len(scores))
            if i != best and scores[i] and (wanted & _word_set(chosen.units[i])) - covered
        ]
        picked += extra[:1]
    text = " ".join(chosen.units[i] for i in sorted(picked)).rstrip(";:,")
    text += "" if text.endswith((".", "!", "?", "…")) else "."
    return DemoReply(f"{LABEL}{text} [{chosen.label}]")


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
    passages, question = find_passages(user)
    if not passages:
        passages, _ = find_passages(system)
        question = user
    last_is_user = bool(messages) and messages[-1].role == "user"
    if tools and last_is_user and (call := _tool_call(question or user, tools, messages, passages)):
        return DemoReply(f"{LABEL}Let me check that with the {call.name} tool.", call)
    if is_interview(system):
        return _interview(system, messages)
    if passages:
        return _answer_from(passages, question or user)
    if any(_CONTEXT_HEADER.match(line) for line in system.splitlines()):
        return DemoReply(f"{LABEL}{NOT_FOUND}")  # retrieval found nothing at all
    return _echo(user)
