"""Testing bots built on threadline: a pytest plugin (fixtures, a network guard), a scripted
model, a WebSocket chat client, the widget in Chromium, and record / replay of real model
calls. See docs/testing.md.

    from threadline.testing import ScriptedModel, ToolUse

    async def test_the_bot(threadline_server):
        model = ScriptedModel([ToolUse("order_status", {"order_id": "A-1"}), "It shipped."])
        async with threadline_server(AGENTS, model=model) as server:
            async with server.client("support") as chat:
                answer = await chat.send("Where is order A-1?")
        assert answer.text == "It shipped."
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .browser import WidgetPage, open_widget
    from .cassette import Cassette, CassetteMiss, RecordingModel, ReplayModel
    from .client import Answer, ChatClient, ToolUseSeen
    from .database import TestDatabases
    from .guard import NetworkBlocked, NetworkGuard
    from .scripted import (
        Fail,
        Reply,
        ScriptedModel,
        ScriptedPrices,
        ScriptedRequest,
        ScriptExhausted,
        Step,
        ToolUse,
    )
    from .server import TestModels, TestServer, serve_agents
    from .site import HostSite, host_page

# Where each name lives: imported on first use, so that the pytest plugin (loaded by every
# pytest run wherever threadline is installed) imports no more than a test asks for.
_HOMES = {
    "browser": ("WidgetPage", "open_widget"),
    "cassette": ("Cassette", "CassetteMiss", "RecordingModel", "ReplayModel"),
    "client": ("Answer", "ChatClient", "ToolUseSeen"),
    "database": ("TestDatabases",),
    "guard": ("NetworkBlocked", "NetworkGuard"),
    "scripted": (
        "Fail",
        "Reply",
        "ScriptExhausted",
        "ScriptedModel",
        "ScriptedPrices",
        "ScriptedRequest",
        "Step",
        "ToolUse",
    ),
    "server": ("TestModels", "TestServer", "serve_agents"),
    "site": ("HostSite", "host_page"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Answer",
    "Cassette",
    "CassetteMiss",
    "ChatClient",
    "Fail",
    "HostSite",
    "NetworkBlocked",
    "NetworkGuard",
    "RecordingModel",
    "ReplayModel",
    "Reply",
    "ScriptExhausted",
    "ScriptedModel",
    "ScriptedPrices",
    "ScriptedRequest",
    "Step",
    "TestDatabases",
    "TestModels",
    "TestServer",
    "ToolUse",
    "ToolUseSeen",
    "WidgetPage",
    "host_page",
    "open_widget",
    "serve_agents",
]
