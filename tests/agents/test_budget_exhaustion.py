"""What a session does when its budget runs out, end to end over the WebSocket: the agent's
`on_budget_exhausted` (hand off, close, or a cheaper model), the events clients get, the
session's state and status after, and the budget line of `message.end`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from threadline.agents import Agent, Turn
from threadline.agents.agent import BUDGET_MESSAGE, HANDOFF_MESSAGE, WAITING_MESSAGE, Exhausted
from threadline.demo import support
from threadline.ledger import Budget, Ledger, Scope
from threadline.ledger.limits import Counter, counters_for
from threadline.ledger.outcomes import CallInfo, Grant

from ..chat_server import ChatServer, chat_server, frames_until

DEMO = "demo:threadline-demo"
# The demo model priced like a premium model (the support bot's $0.10 met it), a modest one,
# a second pricey one, and a free local one ("demo:local", unpriced).
PRICES = {
    DEMO: {"input_per_mtok": 25, "output_per_mtok": 125},
    "demo:modest": {"input_per_mtok": 1, "output_per_mtok": 1},
    "demo:pricey": {"input_per_mtok": 25, "output_per_mtok": 125},
}


def _replying(agent: Agent) -> Agent:
    @agent.state("start")
    async def start(turn: Turn) -> str | None:
        await turn.reply()
        return None

    return agent


# $0.006 cannot pay for 256 output tokens at $125 per million: every reply is refused.
closer = _replying(Agent(name="closer", model=DEMO, budget=Budget(usd=0.006)))
daily = _replying(Agent(name="daily", model=DEMO, budget=Budget(daily=0.006)))
tiny = _replying(Agent(name="tiny", model="demo:modest", budget=Budget(usd=0.006)))
frugal = _replying(
    Agent(
        name="frugal",
        model=DEMO,
        budget=Budget(usd=0.006),
        on_budget_exhausted=Exhausted.cheaper("demo:local"),
    )
)
broke = _replying(  # its cheaper model does not fit either; it has no `handoff` state
    Agent(
        name="broke",
        model=DEMO,
        budget=Budget(usd=0.006),
        on_budget_exhausted=Exhausted.cheaper("demo:pricey", then=Exhausted.handoff()),
    )
)
AGENTS = [support, closer, daily, tiny, frugal, broke]


@contextlib.asynccontextmanager
async def priced_server(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, agents: list[Agent]
) -> AsyncIterator[ChatServer]:
    """A chat server of `agents` with the demo models priced as `PRICES` says."""
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    monkeypatch.setenv("THREADLINE_PRICES", str(prices))
    async with chat_server(database_url, agents) as server:
        yield server


@pytest.fixture
async def chat(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ChatServer]:
    async with priced_server(database_url, tmp_path, monkeypatch, AGENTS) as server:
        yield server


class Talk:
    """One session over one WebSocket: send a message, get the frames of its turn."""

    def __init__(self, chat: ChatServer, session: dict[str, Any], ws: Any) -> None:
        self.chat, self.session, self.ws, self.sent = chat, session, ws, 0

    @property
    def id(self) -> str:
        return str(self.session["session_id"])

    async def say(self, text: str) -> list[dict[str, Any]]:
        self.sent += 1
        frame = {"type": "message.send", "client_id": f"m{self.sent}", "text": text}
        await self.ws.send(json.dumps(frame))
        return await frames_until(self.ws, "message.end")

    async def calls(self) -> list[dict[str, Any]]:
        ledger = Ledger(self.chat.sessions.engine.pool)
        return await ledger.calls(session_id=self.id)

    async def status(self) -> tuple[str, str]:
        info = await self.chat.sessions.get(self.id)
        return info.state, info.status


async def talk(chat: ChatServer, agent: str) -> AsyncIterator[Talk]:
    session = await chat.new_session(agent)
    async with chat.connect(session) as ws:
        await ws.recv()  # session.state
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        yield Talk(chat, session, ws)


def of(frames: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [f for f in frames if f["type"] == kind]


async def test_the_support_bot_answers_on_its_budget_then_hands_off(chat: ChatServer) -> None:
    async for t in talk(chat, "support"):
        first = await t.say("What is the warranty on the leak sensor?")
        end = first[-1]
        assert not of(first, "budget.exceeded") and "1 year on the leak sensor" in end["text"]
        assert end["model"] == DEMO and Decimal(end["cost"]) > 0
        (row,) = await t.calls()
        assert row["cost_usd"] <= row["reserved_usd"] <= Decimal("0.10")
        budget = end["budget"]
        assert (budget["limit"], budget["reserved"], budget["exhausted"]) == ("0.1", "0", False)
        assert Decimal(budget["left"]) == Decimal("0.1") - Decimal(budget["spent"]) > 0
        assert Decimal(budget["spent"]) == row["cost_usd"]

        frames: list[dict[str, Any]] = []
        for question in ["How do I change the carbon block?", "What does error E4 mean?"] * 2:
            frames = await t.say(question)
            if of(frames, "budget.exceeded"):
                break
        # The money ran out: a colleague takes over, and the session says so.
        (exceeded,) = of(frames, "budget.exceeded")
        assert exceeded["action"] == "handoff" and exceeded["scope"] == f"session:{t.id}"
        end = frames[-1]
        assert end["text"].endswith(HANDOFF_MESSAGE) and end["state"] == "handoff"
        assert end["budget"]["exhausted"] is True
        state = await frames_until(t.ws, "session.state")
        assert state[-1] | {"seq": 0} == {
            "type": "session.state",
            "seq": 0,
            "state": "handoff",
            "status": "handoff",
        }
        assert await t.status() == ("handoff", "handoff")
        capped = [f for f in frames if f["type"] == "budget.capped"]
        assert all(c["max_tokens"] < c["requested_max_tokens"] == 512 for c in capped)

        calls = await t.calls()
        later = await t.say("Hello?")  # the demo's handoff state: no model call
        assert later[-1]["text"] == "A colleague has your conversation and will answer here."
        assert len(await t.calls()) == len(calls)
        assert all(c["cost_usd"] <= c["reserved_usd"] for c in calls)
        assert sum(c["cost_usd"] for c in calls) <= Decimal("0.10")


async def test_close_ends_the_session_and_later_messages_cost_nothing(chat: ChatServer) -> None:
    async for t in talk(chat, "closer"):
        frames = await t.say("Hi")
        (exceeded,) = of(frames, "budget.exceeded")
        assert (exceeded["action"], exceeded["scope"]) == ("close", f"session:{t.id}")
        assert Decimal(exceeded["spent_usd"]) == 0
        end = frames[-1]
        assert end["text"] == BUDGET_MESSAGE and end["model"] is None and end["cost"] == "0"
        budget = end["budget"]
        assert budget == {
            "limit": "0.006",
            "spent": "0",
            "reserved": "0",
            "left": "0.006",
            "exhausted": True,
        }
        state = await frames_until(t.ws, "session.state")
        assert (state[-1]["state"], state[-1]["status"]) == ("start", "closed")
        assert await t.status() == ("start", "closed")

        again = await t.say("Are you there?")
        assert again[-1]["text"] == BUDGET_MESSAGE and again[-1]["budget"]["exhausted"] is True
        assert not of(again, "budget.exceeded")  # answered at once: no model asked
        assert await t.calls() == []

        await t.chat.sessions.set_state(t.id, "start")  # an operator reopens it
        assert await t.status() == ("start", "active")


async def test_a_daily_limit_ends_the_turn_but_not_the_session(chat: ChatServer) -> None:
    async for t in talk(chat, "daily"):
        for _ in range(2):  # each message tries again: tomorrow's money is not spent
            frames = await t.say("Hi")
            (exceeded,) = of(frames, "budget.exceeded")
            assert exceeded["scope"] == "agent:daily" and exceeded["bucket"] != "total"
            assert frames[-1]["text"] == BUDGET_MESSAGE
            assert await t.status() == ("start", "active")


async def test_a_cheaper_model_answers_when_the_budget_cannot_pay_for_the_agents(
    chat: ChatServer,
) -> None:
    async for t in talk(chat, "frugal"):
        frames = await t.say("Hi there")
        (exceeded,) = of(frames, "budget.exceeded")
        assert (exceeded["action"], exceeded["model"]) == ("cheaper", DEMO)
        (fallback,) = of(frames, "model.fallback")
        assert fallback | {"seq": 0, "turn_id": ""} == {
            "type": "model.fallback",
            "seq": 0,
            "turn_id": "",
            "from": DEMO,
            "to": "demo:local",
            "reason": "budget",
        }
        end = frames[-1]
        assert end["model"] == "demo:local" and "[demo model]" in end["text"]
        assert end["budget"]["exhausted"] is False
        assert await t.status() == ("start", "active")
        (row,) = await t.calls()
        assert row["model"] == "local" and row["cost_usd"] == 0


async def test_when_the_cheaper_model_does_not_fit_either_the_next_choice_applies(
    chat: ChatServer,
) -> None:
    async for t in talk(chat, "broke"):
        frames = await t.say("Hi there")
        actions = [(f["model"], f["action"]) for f in of(frames, "budget.exceeded")]
        assert actions == [(DEMO, "cheaper"), ("demo:pricey", "handoff")]
        assert frames[-1]["text"] == HANDOFF_MESSAGE
        assert await t.status() == ("handoff", "handoff")
        later = await t.say("Hello?")  # no `handoff` state of its own: it says who has it
        assert later[-1]["text"] == WAITING_MESSAGE
        assert await t.calls() == []


async def test_the_budget_line_is_limit_minus_spent_minus_reserved(chat: ChatServer) -> None:
    async for t in talk(chat, "tiny"):
        end = (await t.say("Hi"))[-1]
        (row,) = await t.calls()
        budget = end["budget"]
        assert (budget["limit"], budget["reserved"]) == ("0.006", "0")
        assert Decimal(budget["spent"]) == row["cost_usd"] > 0
        assert Decimal(budget["left"]) == Decimal("0.006") - row["cost_usd"]

        # Money held by a call in flight elsewhere (another process) is not left either.
        ledger = Ledger(t.chat.sessions.engine.pool)
        scope = Scope(session=t.id)
        declared = [Counter("session", t.id, "total", "total", Decimal("0.006"))]
        held = await ledger.budgets.reserve(
            counters_for(scope, declared=declared),
            fixed_usd=Decimal("0.002"),
            per_token_usd=Decimal(0),
            max_tokens=1,
            min_tokens=1,
            call=CallInfo("demo", "modest", "demo:modest", scope.to_json(), 1),
        )
        assert isinstance(held, Grant) and held.amount_usd == Decimal("0.002")
        end = (await t.say("And now?"))[-1]
        budget = end["budget"]
        spent = sum(c["cost_usd"] for c in await t.calls())
        assert Decimal(budget["spent"]) == spent and budget["reserved"] == "0.002"
        assert Decimal(budget["left"]) == Decimal("0.006") - spent - Decimal("0.002")
        await ledger.close()
