"""Two demo agents. With no provider key they run on the offline demo model, which answers
from the passage retrieval ranked first, calls the tools the user asks for, and asks the
question the agent's stage says to ask. The memoir interviewer is in `memoir`; the support
assistant is here: it answers from the knowledge base (`threadline/rag/kb/`) when the passage
retrieval ranks first is about the question (`relevance`), else hands the session to a
colleague."""

from __future__ import annotations

import hashlib
import re

from ..agents import Agent, Turn
from ..agents.agent import Exhausted
from ..ledger import Budget
from ..rag.knowledge import KB_DIR, Knowledge
from ..tools import tool
from .memoir import memoir
from .relevance import judge_of

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
    "TL-2290": {"name": "Pressure limiter (inlet above 6 bar)", "price_eur": 32.0, "in_stock": 25},
    "TL-3305": {"name": "Leak sensor with 2 m cable", "price_eur": 19.0, "in_stock": 80},
    "TL-5102": {"name": "Power adapter, 24 V", "price_eur": 22.0, "in_stock": 40},
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
    knowledge=Knowledge(KB_DIR, collection="tidewater-kb", share_answers="tenant"),  # a manual
    # per session, for the whole bot per day, and for what one address spends in a day
    budget=Budget(usd=0.10, daily=20.0, per_client_daily=1.0),
    on_budget_exhausted=Exhausted.handoff(),  # a colleague takes over when the money runs out
    title="Support",
    prompt=SUPPORT_PROMPT,
    initial_state="answering",
    greeting="Hi! I can answer questions about the Tidewater TL-500 water purifier: "
    "installation, filters and parts, troubleshooting, warranty and orders.",
)

_HUMAN = re.compile(r"\b(human|person|agent|operator|someone real)\b", re.IGNORECASE)
_YES = re.compile(r"^\W*(yes|yeah|yep|sure|ok(ay)?|please( do)?)\b", re.IGNORECASE)
_SMALL_TALK = re.compile(  # a greeting or thanks of a few words, with no question in it
    r"^(?!.*\?)\W*(?:(hi|hello|hey|good (?:morning|afternoon|evening))|(thanks|thank you|"
    r"cheers|great|perfect|ok(?:ay)?)|(bye|goodbye))\b\W*(?:\w+\W*){0,2}$",
    re.IGNORECASE,
)
_SMALL_TALK_REPLIES = (
    "Hello! What would you like to know about your TL-500?",
    "You're welcome! Anything else about your TL-500?",
    "Goodbye, and enjoy your water!",
)
NOT_IN_KNOWLEDGE = (
    "I couldn't find that in the TL-500 documentation, so I've passed your question to a "
    "colleague. They will answer here shortly."
)


@support.state("answering")
async def answering(turn: Turn) -> str | None:
    if _HUMAN.search(turn.text) or (_YES.match(turn.text) and _offered_a_human(turn)):
        await turn.say("I'm handing you over to a colleague; they will answer here shortly.")
        return turn.handoff("asked for a human")
    if small_talk := _SMALL_TALK.match(turn.text):  # not a question for the documents
        kind = next(n for n, group in enumerate(small_talk.groups()) if group)
        await turn.say(_SMALL_TALK_REPLIES[kind])
        return None
    if not await _knows_about(turn):
        await turn.say(NOT_IN_KNOWLEDGE)
        return turn.handoff("not in the knowledge base")
    await turn.reply(cacheable=turn.first_question)  # a first question stands on its own
    return None


async def _knows_about(turn: Turn) -> bool:
    """The passage retrieval ranks first is about the question, or the user names a part
    (the tools answer): `relevance.Judge.answers`."""
    knowledge = turn.agent.knowledge
    if knowledge is None:
        return True
    bound = knowledge.on(turn.models.ledger.pool)
    return await judge_of(bound).answers(turn.text, await bound.search(turn.text))


def _offered_a_human(turn: Turn) -> bool:
    said = next((m.content for m in reversed(turn.history) if m.role == "assistant"), "")
    return "colleague?" in said


@support.state("handoff")
async def waiting_for_operator(turn: Turn) -> str | None:
    await turn.say("A colleague has your conversation and will answer here.")
    return None


AGENTS = [support, memoir]
