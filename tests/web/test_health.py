"""/healthz, /readyz and /metrics on a real server and database: readiness fails, naming the
check, for a draining node, a pending migration and a database that refuses connections; the
metrics move with a real turn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from threadline.web.health import WORKER_STALE_MIN_S, NodeState
from threadline.web.security import Hosts

from ..chat_server import frames_until
from ..security.conftest import ADMIN, Server, serving

CHECKS = {"database", "migrations", "worker", "events", "notifications", "draining"}
STATUS = {200: "ready", 503: "not ready"}
# The demo model priced (it is free otherwise): the spend metrics have something to count.
PRICES = {"demo:threadline-demo": {"input_per_mtok": 25, "output_per_mtok": 125}}


@pytest.fixture
async def node() -> NodeState:
    return NodeState()


@pytest.fixture
async def server(
    database_url: str, node: NodeState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Server]:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    monkeypatch.setenv("THREADLINE_PRICES", str(prices))
    async with serving(database_url, node=node) as found:
        yield found


async def readiness(server: Server) -> tuple[int, dict[str, Any]]:
    r = await server.http.get("/readyz")
    body: dict[str, Any] = r.json()
    return r.status_code, body


async def eventually(server: Server, status: int, checks: dict[str, str]) -> None:
    """/readyz answers `status` with `checks` within 20 s (the listeners notice a lost
    connection, and reconnect, each in its own time)."""
    answer: tuple[int, dict[str, Any]] | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(20):
            while answer != (status, {"status": STATUS[status], "checks": checks}):
                answer = await readiness(server)
                await asyncio.sleep(0.05)
            return
    raise AssertionError(f"/readyz answers {answer}")


async def test_healthz_answers_anyone(server: Server) -> None:
    r = await server.http.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


async def test_a_working_node_is_ready(server: Server) -> None:
    assert await readiness(server) == (
        200,
        {"status": "ready", "checks": dict.fromkeys(CHECKS, "ok")},
    )


async def test_a_draining_node_is_not_ready(server: Server, node: NodeState) -> None:
    node.draining = True
    status, body = await readiness(server)
    assert (status, body["status"]) == (503, "not ready")
    assert body["checks"] == {**dict.fromkeys(CHECKS, "ok"), "draining": "shutting down"}
    assert (await server.http.get("/healthz")).status_code == 200  # alive all the same
    node.draining = False
    assert (await readiness(server))[0] == 200


async def test_a_worker_whose_claim_loop_stopped_is_not_ready(server: Server) -> None:
    """The loop's last pass grows old: after WORKER_STALE_MIN_S (the test's worker polls
    every 0.05 s), the node is not ready."""
    worker = server.sessions.engine.worker
    assert worker is not None
    await worker.stop()  # as at shutdown: it claims nothing more
    assert (await readiness(server))[0] == 200  # its last pass is recent yet
    async with asyncio.timeout(WORKER_STALE_MIN_S + 10):
        while True:
            answer = await readiness(server)
            if answer[0] == 503:
                break
            await asyncio.sleep(0.1)
    assert time.monotonic() - worker.last_pass >= WORKER_STALE_MIN_S
    assert answer[1]["checks"]["worker"].startswith("no claim pass for ")
    assert {name for name, value in answer[1]["checks"].items() if value != "ok"} == {"worker"}


async def test_a_pending_migration_makes_the_node_not_ready(
    server: Server, database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        newest = await conn.fetchrow(
            "DELETE FROM threadline.schema_migrations WHERE version = "
            "(SELECT max(version) FROM threadline.schema_migrations) RETURNING *"
        )
        assert newest is not None
        status, body = await readiness(server)
        assert (status, body["checks"]["migrations"]) == (503, "1 pending")
        assert {name for name, value in body["checks"].items() if value != "ok"} == {"migrations"}
        await conn.execute(
            "INSERT INTO threadline.schema_migrations VALUES ($1, $2, $3, $4)", *newest.values()
        )
    finally:
        await conn.close()
    assert (await readiness(server))[0] == 200


async def test_a_database_that_refuses_connections_makes_the_node_not_ready(
    server: Server, database_url: str, server_url: str
) -> None:
    """The database stops taking connections and drops the node's: the database and both
    listeners fail their checks; readiness comes back with the database."""
    name = urlsplit(database_url).path.lstrip("/")
    assert (await readiness(server))[0] == 200
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        await admin.execute(  # waits (up to 5 s each) for the connections to end
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1",
            name,
        )
        # The reasons, and nothing of where the database is or what it said. The schema was
        # found current before: that is not asked again. The claim loop goes on, failing.
        failing = {
            "database": "unreachable",
            "events": "not listening",
            "notifications": "not listening",
        }
        await eventually(server, 503, {**dict.fromkeys(CHECKS, "ok"), **failing})
        assert (await server.http.get("/healthz")).status_code == 200
    finally:
        await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
        await admin.close()
    await eventually(server, 200, dict.fromkeys(CHECKS, "ok"))


async def test_a_health_check_by_ip_passes_the_host_check_on_every_interface(
    database_url: str,
) -> None:
    """A load balancer asks `Host: <backend ip>:port`: answered by a server that listens on
    every interface (`--host 0.0.0.0`), refused (400) by one that names its hosts."""
    lb = {"host": "10.0.0.7:8000"}
    async with serving(database_url, hosts=Hosts.serving("0.0.0.0")) as server:
        assert (await server.http.get("/healthz", headers=lb)).status_code == 200
        assert (await server.http.get("/readyz", headers=lb)).status_code == 200
    async with serving(database_url, hosts=Hosts.serving("chat.example.com")) as server:
        assert (await server.http.get("/healthz", headers=lb)).status_code == 400


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Each sample of a Prometheus text answer, by its name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await server.http.get("/metrics", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


async def test_metrics_need_the_admin_key(server: Server) -> None:
    for headers in ({}, {"authorization": "Bearer not-the-admin-key"}):
        r = await server.http.get("/metrics", headers=headers)
        assert r.status_code == 401
        assert "threadline_" not in r.text


async def test_metrics_move_with_a_turn(server: Server, node: NodeState) -> None:
    before = await scrape(server)
    turns = ("threadline_turns", (("status", "succeeded"),))
    tokens_in = ("threadline_llm_tokens_total", (("direction", "input"),))
    tokens_out = ("threadline_llm_tokens_total", (("direction", "output"),))
    sockets = ("threadline_streams", ())
    spend, today = ("threadline_spend_usd_total", ()), ("threadline_spend_today_usd", ())
    assert before[turns] == before[tokens_in] == before[tokens_out] == before[spend] == 0
    assert before[sockets] == 0
    assert before[("threadline_scrape_database_ok", ())] == 1
    assert before[("threadline_start_time_seconds", ())] == node.started_at
    assert before[("threadline_queue_pending", (("queue", "threadline.turns"),))] == 0
    size = before[("threadline_db_pool_connections", ())]
    assert 0 <= before[("threadline_db_pool_idle_connections", ())] <= size
    assert 0 < size <= before[("threadline_db_pool_max_connections", ())]

    session = await server.new_session()
    async with server.connect(session) as ws:
        await ws.recv()  # session.state
        assert (await scrape(server))[sockets] == 1
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "Hello"}))
        await frames_until(ws, "message.end")
    async with asyncio.timeout(20):  # the run's outcome and the ledger's row land after
        while True:
            after = await scrape(server)
            done = after[turns] == 1 and after[tokens_out] > 0 and after[spend] > 0
            if done and after[sockets] == 0:  # the server saw the close too
                break
            await asyncio.sleep(0.05)
    assert after[tokens_in] > 0
    assert 0 < after[today] <= after[spend]
    assert after[("threadline_cache_hits_total", ())] == 0
