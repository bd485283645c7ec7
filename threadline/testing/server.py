"""An in-process threadline server for tests: the FastAPI app under uvicorn on a free port
of 127.0.0.1, in the test's event loop, with an engine and a worker on the test's database.

    async with serve_agents(database_url, [support], model=ScriptedModel(["Hi!"])) as server:
        async with server.client("support") as chat:
            answer = await chat.send("Hello")
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from ..agents import Agent
from ..engine import Engine
from ..ledger import Ledger
from ..llm import Model, PriceOverrides
from ..llm.model import parse_spec
from ..router import ModelPolicy, Models
from ..sessions import Sessions
from ..web import Auth, Hub, create_app
from ..web.limits import Limits
from ..web.serve import uvicorn_config
from .cassette import Cassette, ReplayModel
from .client import ChatClient
from .scripted import PROVIDER as SCRIPTED
from .scripted import ScriptedPrices

__all__ = ["ADMIN_KEY", "TestModels", "TestServer", "serve_agents", "serving"]

ADMIN_KEY = "threadline-test-admin-key"
SECRET = "threadline-test-secret-of-32-bytes-or-more"
OFFLINE = frozenset({SCRIPTED, "demo"})  # models a cassette leaves alone
LEDGER_COLUMNS = (
    "session_id, agent, provider, requested_model, model, status, stop_reason, error_code, "
    "input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, "
    "cost_usd, priced, estimated"
)


class TestModels(Models):
    """`Models` whose ledger prices ScriptedModels at their price, and whose models record
    to or replay from a cassette when one is given."""

    __test__ = False

    def __init__(
        self,
        engine: Engine,
        *,
        cassette: Cassette | None = None,
        model_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(model_options=model_options)
        self._engine = engine
        self.cassette = cassette
        self.prices = ScriptedPrices(dict(PriceOverrides.from_env()))
        self._test_ledger: Ledger | None = None
        self._wrapped: dict[int | str, Model] = {}

    @property
    def ledger(self) -> Ledger:
        pool = self._engine.pool
        if self._test_ledger is None or self._test_ledger.pool is not pool:
            self._test_ledger = Ledger(pool, overrides=self.prices)
        return self._test_ledger

    def model(self, model: str | Model) -> Model:
        cassette = self.cassette
        spec = model if isinstance(model, str) else model.spec
        if cassette is None or parse_spec(spec)[0] in OFFLINE:
            return super().model(model)
        key: int | str = model if isinstance(model, str) else id(model)
        found = self._wrapped.get(key)
        if found is None:
            if cassette.recording:
                found = cassette.wrap(super().model(model))
            else:  # the real adapter is never made: no key or SDK client is needed
                provider, name = parse_spec(spec)
                found = ReplayModel(provider, name, cassette)
            self._wrapped[key] = found
        return found

    async def aclose(self) -> None:
        if self._test_ledger is not None:
            await self._test_ledger.drain()
            await self._test_ledger.budgets.close()
        await super().aclose()


@dataclass
class TestServer:
    """A running server: `url`, `sessions`, `auth`, `http` (an httpx client on `url`)."""

    __test__ = False

    url: str
    sessions: Sessions
    auth: Auth
    http: httpx.AsyncClient
    models: TestModels

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN_KEY}"}

    async def new_session(self, agent: str) -> dict[str, Any]:
        """`POST /v1/sessions`: {session_id, token, agent, state}."""
        response = await self.http.post("/v1/sessions", json={"agent": agent})
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def ws_url(self, session: dict[str, Any]) -> str:
        base = self.url.replace("http", "ws", 1)
        return f"{base}/v1/sessions/{session['session_id']}/ws?token={session['token']}"

    @contextlib.asynccontextmanager
    async def client(self, agent: str) -> AsyncIterator[ChatClient]:
        """A new session with `agent`, and a WebSocket client on it."""
        session = await self.new_session(agent)
        async with ChatClient.connect(self.ws_url(session), session) as chat:
            yield chat

    async def ledger_rows(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """The ledger's rows (oldest first), of one session or all: what each call cost."""
        await self.models.ledger.drain()
        where = "WHERE session_id = $1" if session_id else "WHERE $1::text IS NULL"
        query = f"SELECT {LEDGER_COLUMNS} FROM threadline.llm_calls {where} ORDER BY id"
        async with self.sessions.engine.pool.acquire() as conn:
            rows = await conn.fetch(query, session_id)
        return [dict(row) for row in rows]


def with_model(agents: Iterable[Agent], model: Model | str | None) -> list[Agent]:
    """The agents, each answering with `model` instead of its own (when one is given)."""
    if model is None:
        return list(agents)
    return [dataclasses.replace(agent, model=ModelPolicy(model)) for agent in agents]


@contextlib.asynccontextmanager
async def serve_agents(
    database_url: str,
    agents: Iterable[Agent],
    *,
    model: Model | str | None = None,
    cassette: Cassette | None = None,
    origins: Sequence[str] = (),
    model_options: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[TestServer]:
    """Serve `agents` (answering with `model` when given) on `database_url`; `origins` may
    embed the widget. Demo models stream at once unless `model_options` says otherwise."""
    engine = Engine(database_url, poll_interval=0.05)
    options = {"demo": {"tokens_per_second": 0}} if model_options is None else model_options
    models = TestModels(engine, cassette=cassette, model_options=options)
    sessions = Sessions(engine, with_model(agents, model), models=models)
    async with engine:
        hub = Hub(engine.listen_url)
        await hub.start()
        auth = Auth(secret=SECRET, admin_key=ADMIN_KEY, allowed_origins=tuple(origins))
        app = create_app(sessions, hub, auth)
        try:
            async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
                yield TestServer(url, sessions, auth, http, models)
        finally:
            await hub.stop()
            await models.aclose()


@contextlib.asynccontextmanager
async def serving(app: Any, limits: Limits | None = None) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free local port, for as long as the block runs: its
    base URL. Served as `threadline serve` serves it (its protocols: streamed pieces written
    past ASGI), under `limits`; by default without limits on connections per client (a test
    opens many from one address)."""
    unlimited = Limits(connections_per_client=None, new_connections=None)
    config = uvicorn_config(
        app,
        "127.0.0.1",
        0,
        limits or unlimited,
        log_level="error",
        timeout_graceful_shutdown=5,  # a connection a test left open ends the wait
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # uvicorn offers no event to await
            if task.done():
                task.result()
                raise RuntimeError("the test server stopped before it started")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
