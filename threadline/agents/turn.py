"""`Turn`: what a state handler works with during one user message."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..ledger import LLM, Scope
from ..llm import Message, StreamEvent, TextDelta, Usage, price
from .agent import Agent


class TurnCancelled(Exception):
    """The turn was cancelled while its answer streamed."""


Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass
class Turn:
    """One turn of a session. Handlers read `text`, `history`, `state` and `data` (a dict
    saved with the session), and answer with `reply` (an LLM call, streamed) or `say`."""

    agent: Agent
    session_id: str
    turn_id: str
    state: str
    data: dict[str, Any]
    text: str
    history: list[Message]
    llm: LLM
    emit: Emit
    scope: Scope
    model: str
    cancelled: Callable[[], bool] = lambda: False
    replies: list[str] = field(default_factory=list)
    handoff_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost: Decimal | None = Decimal(0)  # None once a call's price is unknown
    model_used: str | None = None

    async def reply(
        self, *, instructions: str | None = None, max_tokens: int | None = None, **variables: Any
    ) -> str:
        """Ask the agent's model, with its rendered prompt and the history; the answer
        streams to the session as it is generated."""
        system = self.agent.render(state=self.state, data=self.data, **variables)
        if instructions:
            system += "\n\n" + instructions
        messages = [Message.system(system), *self.history, Message.user(self.text)]
        started = False

        async def forward(event: StreamEvent) -> None:
            nonlocal started
            if self.cancelled():  # the user pressed stop: end the call, it is billed so far
                raise TurnCancelled(self.turn_id)
            if isinstance(event, TextDelta) and event.text:
                if not started:
                    started = True
                    await self.emit("message.start", {"turn_id": self.turn_id})
                await self.emit(
                    "message.delta",
                    {"turn_id": self.turn_id, "text": event.text, "ts": time.time()},
                )

        response = await self.llm.request(
            self.model,
            messages,
            scope=self.scope,
            max_tokens=max_tokens or self.agent.max_tokens,
            on_delta=forward,
        )
        self.replies.append(response.text)
        self.usage = self.usage + response.usage
        self.model_used = f"{response.provider}:{response.model}"
        call = price(
            response.provider, response.model, response.usage, overrides=self.llm.ledger.overrides
        )
        self.cost = (
            None if self.cost is None or call.total_usd is None else self.cost + call.total_usd
        )
        return response.text

    async def say(self, text: str) -> None:
        """Answer with fixed text (no model call)."""
        await self.emit("message.start", {"turn_id": self.turn_id})
        await self.emit("message.delta", {"turn_id": self.turn_id, "text": text})
        self.replies.append(text)

    def handoff(self, reason: str) -> str:
        """Hand the session to a human operator; returns the state to go to."""
        self.handoff_reason = reason
        return "handoff"
