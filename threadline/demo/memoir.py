"""The memoir interviewer: intake -> outline -> chapters -> review, and the memoir it writes.

The handlers keep every answer in the session's data (`answers`: stage, chapter, question,
answer) and choose the next question themselves; the prompt tells the model the stage and
the question to ask (`Ask next:`), so any model — the offline demo model too — walks the
same path. At the review the memoir is written from the answers as a Markdown document of
chapters (`memoir_markdown`), shown in the chat and kept in the session's data as `memoir`
(`GET /v1/sessions/{id}/export` carries it; `?format=md` has it in the transcript)."""

from __future__ import annotations

import os
from typing import Any

from ..agents import Agent, Turn
from ..ledger import Budget

__all__ = ["CHAPTERS", "INTAKE", "memoir", "memoir_markdown"]

INTAKE = (
    "Where and when were you born?",
    "Who were the most important people of your childhood?",
    "What did you do for a living, and what did you love about it?",
)
CHAPTERS = ("Beginnings", "The people who raised me", "Work and what I loved")  # one per intake
CHAPTER_QUESTIONS = (
    "Let's write chapter {n}, “{title}”. Take me to one moment of it: where are you, and what "
    "do you see, hear or smell?",
    "Who is with you in that memory, and what do they say or do?",
    "Looking back now, what did that time give you?",
)
OUTLINE_QUESTION = "Would you like to change anything in this outline, or shall we begin?"
REVIEW_QUESTION = "Your first draft is below. What would you like to change, add or cut?"
MORE_QUESTION = "I've noted that for the next draft. Anything else you would like to change?"

MEMOIR_PROMPT = """You are a warm, patient memoir interviewer helping someone write the story
of their life, one conversation at a time. Stage: {{ stage }}. In a sentence, thank them for
their last answer in a way that shows you listened; then ask one question, the one below.
{% if stage == "outline" %}
Propose this outline of their memoir, built from their answers:
{% for chapter in chapters %}{{ loop.index }}. {{ chapter }}
{% endfor %}{% elif stage == "review" %}
The memoir's first draft is shown to them right after your message.
{% endif %}
Ask next: {{ question }}"""

# After days of silence the memoir bot nudges; shorten it to see it: THREADLINE_MEMOIR_REMIND=60
REMIND_AFTER = float(os.environ.get("THREADLINE_MEMOIR_REMIND", 3 * 24 * 3600))
REMINDER = "It's been a while! Shall we pick up your story where we left off?"

memoir = Agent(
    name="memoir",
    title="Memoir interview",
    prompt=MEMOIR_PROMPT,
    initial_state="intake",
    budget=Budget(usd=0.50),  # per session: a memoir takes weeks, and must not cost a fortune
    greeting="Hello! I'll help you write your memoir, one conversation at a time. "
    f"To begin: {INTAKE[0][0].lower()}{INTAKE[0][1:]}",
)


def _keep(turn: Turn, stage: str) -> list[dict[str, Any]]:
    """Record the user's message as the answer to the question asked last."""
    answers: list[dict[str, Any]] = turn.data.setdefault("answers", [])
    answers.append(
        {
            "stage": stage,
            "chapter": turn.data.get("chapter"),
            "question": turn.data.get("asked", INTAKE[0]),
            "answer": turn.text,
        }
    )
    return [a for a in answers if a["stage"] == stage and a["chapter"] == turn.data.get("chapter")]


def _outline(data: dict[str, Any]) -> list[str]:
    intake = [a["answer"] for a in data.get("answers", []) if a["stage"] == "intake"]
    return [f"{title} ({_short(answer)})" for title, answer in zip(CHAPTERS, intake, strict=False)]


def _short(text: str, words: int = 8) -> str:
    parts = text.split()
    return " ".join(parts[:words]) + ("…" if len(parts) > words else "")


async def _ask(turn: Turn, stage: str, question: str) -> None:
    turn.data["asked"] = question
    await turn.reply(stage=stage, question=question, chapters=_outline(turn.data))


def _chapter_question(chapter: int, number: int) -> str:
    return CHAPTER_QUESTIONS[number].format(n=chapter, title=CHAPTERS[chapter - 1])


@memoir.state("intake")
async def intake(turn: Turn) -> str | None:
    given = _keep(turn, "intake")
    turn.remind_after(REMIND_AFTER, REMINDER)
    if len(given) < len(INTAKE):
        await _ask(turn, "intake", INTAKE[len(given)])
        return None
    await _ask(turn, "outline", OUTLINE_QUESTION)
    return "outline"


@memoir.state("outline")
async def outline(turn: Turn) -> str | None:
    _keep(turn, "outline")
    turn.data["chapter"] = 1
    turn.remind_after(REMIND_AFTER, REMINDER)
    await _ask(turn, "chapters", _chapter_question(1, 0))
    return "chapters"


@memoir.state("chapters")
async def chapters(turn: Turn) -> str | None:
    given = _keep(turn, "chapters")
    chapter = int(turn.data.get("chapter", 1))
    if len(given) < len(CHAPTER_QUESTIONS):
        turn.remind_after(REMIND_AFTER, REMINDER)
        await _ask(turn, "chapters", _chapter_question(chapter, len(given)))
        return None
    if chapter < len(CHAPTERS):
        turn.data["chapter"] = chapter + 1
        turn.remind_after(REMIND_AFTER, REMINDER)
        await _ask(turn, "chapters", _chapter_question(chapter + 1, 0))
        return None
    turn.data["memoir"] = memoir_markdown(turn.data)
    await _ask(turn, "review", REVIEW_QUESTION)
    await turn.say(turn.data["memoir"])
    return "review"


@memoir.state("review")
async def review(turn: Turn) -> str | None:
    _keep(turn, "review")
    turn.data["memoir"] = memoir_markdown(turn.data)
    await _ask(turn, "review", MORE_QUESTION)
    return None


def memoir_markdown(data: dict[str, Any]) -> str:
    """The memoir as Markdown: a chapter per intake question, made of that answer and the
    chapter's interview, then the notes given on the outline and the draft."""
    answers: list[dict[str, Any]] = data.get("answers", [])
    intake_answers = [a["answer"] for a in answers if a["stage"] == "intake"]
    lines = ["# My memoir", ""]
    for number, title in enumerate(CHAPTERS, 1):
        told = intake_answers[number - 1 : number]
        told += [a["answer"] for a in answers if (a["stage"], a["chapter"]) == ("chapters", number)]
        lines += [f"## Chapter {number}: {title}", ""]
        lines += [paragraph for text in told for paragraph in (text.strip(), "")]
    notes = [a["answer"].strip() for a in answers if a["stage"] in ("outline", "review")]
    if notes:
        lines += ["## Notes for the next draft", "", *(f"- {note}" for note in notes), ""]
    return "\n".join(lines).rstrip() + "\n"
