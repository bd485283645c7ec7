"""A server as `threadline serve` configures uvicorn (its HTTP protocol, its limits), with the
test agents of tests/chat_server.py and whatever limits, hosts and dashboard a test asks for."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI

from tests.chat_server import ORIGIN, SECRET, ChatServer, echo
from threadline import Engine
from threadline.router import Models
from threadline.sessions import Sessions
from threadline.testing.server import serving as serve_app
from threadline.web import Auth, Hub, create_app
from threadline.web.limits import Limits
from threadline.web.security import Hosts

ADMIN_KEY = "admin-key"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Server(ChatServer):
    app: FastAPI


Serve = Callable[..., contextlib.AbstractAsyncContextManager[Server]]


@pytest.fixture
def serve(database_url: str) -> Serve:
    """`async with serve(limits=..., hosts=..., ...) as server:` a server with those."""
    return lambda **options: serving(database_url, **options)


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[Server]:
    """The defaults: `Limits()`, the loopback hosts, the dashboard behind its login."""
    async with serving(database_url) as found:
        yield found


@contextlib.asynccontextmanager
async def serving(
    database_url: str,
    *,
    limits: Limits | None = None,
    hosts: Hosts | None = None,
    admin_key: str | None = ADMIN_KEY,
    **options: Any,
) -> AsyncIterator[Server]:
    engine = Engine(database_url, poll_interval=0.05)
    models = Models(model_options={"demo": {"tokens_per_second": 1000}})
    sessions = Sessions(engine, [echo], models=models, max_message_chars=2000)
    limits = limits or Limits()
    async with engine:
        hub = Hub(engine.url)
        await hub.start()
        auth = Auth(secret=SECRET, admin_key=admin_key, allowed_origins=(ORIGIN,))
        app = create_app(sessions, hub, auth, limits=limits, hosts=hosts, **options)
        try:
            async with serve_app(app, limits) as url, httpx.AsyncClient(base_url=url) as http:
                yield Server(url, sessions, auth, http, hub, app)
        finally:
            await hub.stop()
            await models.aclose()


def token_for(session_id: str, *, secret: str = SECRET, ttl: int = 3600) -> str:
    """A session token as the server signs them: `ttl` < 0 is an expired one, another
    `secret` a forged one."""
    now = int(time.time())
    return jwt.encode({"sid": session_id, "iat": now, "exp": now + ttl}, secret, "HS256")


@contextlib.asynccontextmanager
async def logged_in(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding the dashboard's cookie."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        r = await client.post("/dashboard/login", data={"key": ADMIN_KEY})
        assert r.status_code == 303, r.text
        yield client
