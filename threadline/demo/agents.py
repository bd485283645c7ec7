"""Two demo agents. With no provider key they run on the offline demo model, which answers
from the context in its prompt and asks the next interview question."""

from __future__ import annotations

import hashlib
import os
import re

from ..agents import Agent, Turn
from ..ledger import Budget
from ..rag.knowledge import KB_DIR, Knowledge
from ..tools import tool

# -- memoir: intake -> outline -> chapters -> review ------------------------------------------

MEMOIR_PROMPT = """You are a warm, patient memoir interviewer helping someone write the story
of their life. Stage: {{ state }}. Ask one question at a time and build on their answers.
{% if state == "intake" %}Interview questions to ask, in order:
- Ask where and when they were born.
- Ask who the most important people of their childhood were.
- Ask what they did for a living, and what they loved about it.
{% elif state == "outline" %}Propose an outline of 3 to 5 chapters from what they told you
({{ data.get("facts", [])|join("; ") }}), then ask which chapter to start with.
{% elif state == "chapters" %}Interview them for chapter {{ data.get("chapter", 1) }}.
Ask for a concrete memory: a place, a smell, a sentence someone said.
{% else %}Read back a short summary of the chapters and ask what to change.{% endif %}"""

memoir = Agent(
    name="memoir",
    title="Memoir interview",
    prompt=MEMOIR_PROMPT,
    initial_state="intake",
    budget=Budget(usd=0.50),  # per session: a memoir takes weeks, and must not cost a fortune
    greeting="Hello! I'll help you write your memoir, one conversation at a time. "
    "Shall we begin with where you grew up?",
)

# After days of silence the memoir bot nudges; shorten it to see it: THREADLINE_MEMOIR_REMIND=60
REMIND_AFTER = float(os.environ.get("THREADLINE_MEMOIR_REMIND", 3 * 24 * 3600))
REMINDER = "It's been a while! Shall we pick up your story where we left off?"
INTAKE_QUESTIONS = 3
CHAPTER_QUESTIONS = 3


@memoir.state("intake")
async def intake(turn: Turn) -> str | None:
    facts = turn.data.setdefault("facts", [])
    facts.append(turn.text[:200])
    await turn.reply()
    turn.remind_after(REMIND_AFTER, REMINDER)
    return "outline" if len(facts) >= INTAKE_QUESTIONS else None


@memoir.state("outline")
async def outline(turn: Turn) -> str | None:
    await turn.reply()
    turn.data["chapter"] = 1
    turn.data["answers"] = 0
    return "chapters"


@memoir.state("chapters")
async def chapters(turn: Turn) -> str | None:
    turn.data["answers"] = turn.data.get("answers", 0) + 1
    await turn.reply()
    turn.remind_after(REMIND_AFTER, REMINDER)
    if turn.data["answers"] >= CHAPTER_QUESTIONS:
        turn.data["chapter"] = turn.data.get("chapter", 1) + 1
        turn.data["answers"] = 0
        if turn.data["chapter"] > 3:
            return "review"
    return None


@memoir.state("review")
async def review(turn: Turn) -> str | None:
    await turn.reply()
    return None


# -- support: answers from the product's knowledge base, hands off to a human ----------------

SUPPORT_PROMPT = """You are the support assistant of Tidewater, maker of the (fictional)
TL-500 under-sink water purifier. Answer only from the context below, briefly, citing the
passages you used by their [number]. If the answer is not there, say so and offer a human
colleague. Look parts up and place orders with your tools."""

PARTS = {
    "TL-4471": {"name": "Sediment pre-filter", "price_eur": 14.0, "in_stock": 240},
    "TL-4472": {"name": "Carbon block", "price_eur": 29.0, "in_stock": 150},
    "TL-4480": {"name": "Reverse-osmosis membrane", "price_eur": 89.0, "in_stock": 0},
    "TL-2210": {"name": "Faucet kit, brushed steel", "price_eur": 45.0, "in_stock": 60},
    "TL-3305": {"name": "Leak sensor with 2 m cable", "price_eur": 19.0, "in_stock": 80},
    "TL-6610": {"name": "Remineralisation cartridge", "price_eur": 24.0, "in_stock": 35},
}


@tool
def lookup_part(code: str) -> dict[str, object]:
    """Look up a part by its code: its name, price and stock.

    Args:
        code: The part code, like TL-4471.
    """
    part = PARTS.get(code.upper())
    return {"code": code.upper(), **part} if part else {"code": code, "found": False}


@tool(confirm=True)
def place_order(code: str, quantity: int = 1) -> dict[str, object]:
    """Order a part for the customer (a colleague or the customer approves it first).

    Args:
        code: The part code, like TL-4472.
        quantity: How many to order.
    """
    part = PARTS.get(code.upper())
    if part is None:
        return {"ordered": False, "reason": f"no part {code}"}
    if quantity < 1 or quantity > 10:
        return {"ordered": False, "reason": "between 1 and 10 items per order"}
    number = "ORD-" + hashlib.sha1(f"{code}:{quantity}".encode()).hexdigest()[:8].upper()
    return {"ordered": True, "order": number, "code": code.upper(), "quantity": quantity}


support = Agent(
    name="support",
    tools=[lookup_part, place_order],
    knowledge=Knowledge(KB_DIR, collection="tidewater-kb"),
    budget=Budget(usd=0.10, daily=20.0),  # per session, and for the whole bot per day
    title="Support",
    prompt=SUPPORT_PROMPT,
    initial_state="answering",
    greeting="Hi! I can answer questions about the Tidewater TL-500 water purifier: "
    "installation, filters and parts, troubleshooting, warranty and orders.",
)

_HUMAN = re.compile(r"\b(human|person|agent|operator|someone real)\b", re.IGNORECASE)


@support.state("answering")
async def answering(turn: Turn) -> str | None:
    if _HUMAN.search(turn.text):
        await turn.say("I'm handing you over to a colleague; they will answer here shortly.")
        return turn.handoff("asked for a human")
    await turn.reply(cacheable=turn.first_question)  # a first question stands on its own
    return None


@support.state("handoff")
async def waiting_for_operator(turn: Turn) -> str | None:
    await turn.say("A colleague has your conversation and will answer here.")
    return None


AGENTS = [support, memoir]
