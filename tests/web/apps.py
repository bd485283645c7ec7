"""Agents and an engine for chat processes the tests start: `threadline serve --agents
tests.web.apps:AGENTS` and `threadline worker --app tests.web.apps:engine`."""

from __future__ import annotations

from threadline import Engine
from threadline.agents import Agent, Turn
from threadline.sessions import Sessions

slow = Agent(name="slow", model="demo:threadline-demo", prompt="You are a test bot.")


@slow.state("start")
async def _answer(turn: Turn) -> str | None:
    await turn.reply()
    return None


AGENTS = [slow]
engine = Engine(poll_interval=0.2, recover_interval=0.2)
sessions = Sessions(engine, AGENTS)
