"""The demo bots on a real server (the chat tests' one), and how to talk to them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from threadline.agents import Agent, Turn
from threadline.demo import AGENTS
from threadline.demo.agents import SUPPORT_PROMPT, support
from threadline.web.limits import Limits, Rate

from ..chat_server import ChatServer, chat_server, frames_until

# The support bot's knowledge and prompt with no handoff rule in front: every question reaches
# the model, and every turn may be cached (to see what the cache refuses).
ungated = Agent(
    name="ungated",
    prompt=SUPPORT_PROMPT,
    model="demo:threadline-demo",
    knowledge=support.knowledge,
    initial_state="answering",
)


@ungated.state("answering")
async def _answer(turn: Turn) -> str | None:
    await turn.reply(cacheable=True)
    return None


@pytest.fixture
async def chat(database_url: str) -> AsyncIterator[ChatServer]:
    # A memoir is a long talk: more messages in a few seconds than a session may send by
    # default (8 in 10 s, across connections).
    limits = Limits(session_messages=Rate(30, 10))
    async with chat_server(database_url, [*AGENTS, ungated], limits=limits) as server:
        yield server


async def say(ws: Any, text: str, client_id: str) -> list[dict[str, Any]]:
    """Send a message and read every frame up to its answer's end."""
    await ws.send(json.dumps({"type": "message.send", "client_id": client_id, "text": text}))
    return await frames_until(ws, "message.end")


async def ask(chat: ChatServer, session: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """A first question on a fresh connection: the frames of its turn."""
    async with chat.connect(session) as ws:
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        return await say(ws, text, "m1")


async def converse(
    chat: ChatServer, session: dict[str, Any], texts: list[str]
) -> list[dict[str, Any]]:
    """Say each text in turn, each on its own connection (as a user coming back would); the
    `message.end` frame of each answer."""
    ends, seen = [], 0
    for n, text in enumerate(texts, 1):
        async with chat.connect(session) as ws:
            await ws.send(json.dumps({"type": "resume", "after_seq": seen}))
            frames = await say(ws, text, f"m{n}")
        seen = max(f.get("seq", seen) for f in frames)
        ends.append(frames[-1])
    return ends


def answer_of(frames: list[dict[str, Any]]) -> str:
    text: str = [f for f in frames if f["type"] == "message.end"][-1]["text"]
    return text


async def session_info(
    chat: ChatServer, session: dict[str, Any], path: str = "", **params: str
) -> Any:
    url = f"/v1/sessions/{session['session_id']}{path}"
    response = await chat.http.get(url, params={"token": session["token"], **params})
    assert response.status_code == 200, response.text
    return response.json() if "json" in response.headers["content-type"] else response.text
