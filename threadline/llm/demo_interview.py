"""How the offline demo model holds an interview its system prompt describes: the next
question, any list to read back, and a summary once the questions are done (see
`demo_replies`, rule 3)."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from .demo_text import LIST_MARKER, quote
from .messages import Message

__all__ = ["interview", "is_interview"]

_ASK_LINE = re.compile(r"^\s*(?:ask next|next question|then ask)\s*:\s*(.+?)\s*$", re.I | re.M)
_READ_BACK = re.compile(r"^\s*(?:propose|read back|present|show)\b[^\n]*:\s*$", re.I)


def _questions(system: str) -> list[str]:
    found = []
    for line in system.splitlines():
        line = LIST_MARKER.sub("", line).strip()
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


def interview(system: str, messages: Sequence[Message]) -> str:
    """The interviewer's next line: thanks for the last answer, then the next question (with
    any list to read back), or a summary of the answers once there is none."""
    said = [m.content for m in messages if m.role == "assistant"]
    asked = " ".join(said).lower()
    first_question = next((i for i, m in enumerate(messages) if m.role == "assistant"), None)
    answers = [
        m.content
        for i, m in enumerate(messages)
        if m.role == "user" and first_question is not None and i > first_question
    ]
    opening = f"Thank you for sharing that (“{quote(answers[-1])}”)." if answers else ""
    opening = opening or "Welcome! Let's begin."
    listing = _read_back(system)
    explicit = _ASK_LINE.findall(system)
    if explicit:
        question = explicit[-1]
    else:
        question = next((q for q in _questions(system) if q.lower() not in asked), "")
    if question:
        middle = f"\n\n{listing}\n\n" if listing else " "
        return f"{opening}{middle}{question}"
    if "that was my last question" in asked:
        return f"{opening} Is there anything you would like to add?"
    summary = " ".join(f"({n}) {quote(a)}" for n, a in enumerate(answers, 1))
    return f"{opening} That was my last question. Here is what you told me: {summary}"
