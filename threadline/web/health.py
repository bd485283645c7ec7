"""What load balancers and operators ask a node: `/healthz` (the process answers), `/readyz`
(it can take work: database, schema, worker, listeners, not draining) and `/metrics`
(Prometheus, with the admin key: it shows money)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from pydantic import BaseModel

from .. import db
from ..engine import Engine
from ..engine.reports import run_counts
from ..engine.worker import Worker
from ..errors import SchemaError
from ..ledger.reports import usage_totals
from ..sessions import TURN_QUEUE, Sessions
from ..sessions.runtime import TURN_WORKFLOW
from . import queries
from .answers import refusals
from .auth import Auth
from .hub import Hub
from .limits import Limiter

log = logging.getLogger(__name__)

DATABASE_TIMEOUT_S = 2.0  # a readiness probe's wait for the database
SCRAPE_TIMEOUT_S = 5.0  # a scrape's wait for its queries (Prometheus gives up at 10 s)
# The claim loop begins a pass at least every min(poll, recover) interval; one that has not
# for this many of them (and at least WORKER_STALE_MIN_S) is taken for stuck or dead.
WORKER_STALE_PASSES = 10
WORKER_STALE_MIN_S = 5.0
RUN_STATUSES = ("pending", "running", "waiting", "succeeded", "failed", "cancelled")


@dataclass
class NodeState:
    """This process as a node behind a load balancer. `draining`: it is shutting down, so
    readiness fails and balancers send new work elsewhere while open requests finish."""

    draining: bool = False
    started_at: float = field(default_factory=time.time)  # seconds since the epoch


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """`checks`: each check's "ok", or in a few words why it failed."""

    status: Literal["ready", "not ready"]
    checks: dict[str, str]


def health_router(
    sessions: Sessions, hub: Hub, auth: Auth, node: NodeState, limiter: Limiter
) -> APIRouter:
    """The three routes. `sessions.engine` is read per request: the engine may open after."""
    router = APIRouter()
    ready = _Readiness(hub, node)
    scrapes = _Metrics(node, limiter)

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """200 while the process answers (no database query)."""
        return Health(status="ok")

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A check failed"}},
    )
    async def readyz() -> JSONResponse:
        """200 when this node can take work, else 503 naming the checks that failed."""
        checks = await ready.checks(sessions.engine)
        good = all(value == "ok" for value in checks.values())
        body = Readiness(status="ready" if good else "not ready", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if good else 503)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            **refusals(401),
        },
    )
    async def metrics(request: Request) -> Response:
        """The node's and the database's numbers; the admin key as a bearer (costs)."""
        if not auth.is_admin(request.headers.get("authorization")):
            raise HTTPException(401, "the admin API key is required")
        body = await scrapes.render(sessions.engine)
        return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return router


class _Readiness:
    def __init__(self, hub: Hub, node: NodeState) -> None:
        self.hub = hub
        self.node = node
        self.migrated = False  # once current, the schema stays so for this process's life
        # One probe at a time: a flood of them holds one pooled connection, not all.
        self.lock = asyncio.Lock()

    async def checks(self, engine: Engine) -> dict[str, str]:
        checks = await self._database(engine)
        worker = engine.worker
        if worker is not None:  # this process runs one
            checks["worker"] = _worker_state(worker)
        checks["events"] = "ok" if self.hub.listening else "not listening"
        checks["notifications"] = "ok" if engine.listening else "not listening"
        checks["draining"] = "shutting down" if self.node.draining else "ok"
        return checks

    async def _database(self, engine: Engine) -> dict[str, str]:
        """`SELECT 1`, and the pending migrations until there are none."""
        found = {"database": "ok", "migrations": "ok" if self.migrated else "not checked"}
        try:
            async with (
                asyncio.timeout(DATABASE_TIMEOUT_S),
                self.lock,
                engine.pool.acquire() as conn,
            ):
                await conn.fetchval(queries.PING)
                if not self.migrated:
                    waiting = await db.pending(conn)
                    self.migrated = not waiting
                    found["migrations"] = f"{len(waiting)} pending" if waiting else "ok"
        except TimeoutError:
            found["database"] = f"no answer within {DATABASE_TIMEOUT_S:g} s"
        except SchemaError:
            found["migrations"] = "the schema is newer than this code"
        except Exception as exc:  # whatever it is, the node cannot work; its text may name hosts
            log.debug("readiness: the database check failed", exc_info=exc)
            found["database"] = "unreachable"
        return found


def _worker_state(worker: Worker) -> str:
    interval = min(worker.poll_interval, worker.recover_interval)
    age = time.monotonic() - worker.last_pass
    if age > max(WORKER_STALE_PASSES * interval, WORKER_STALE_MIN_S):
        return f"no claim pass for {age:.0f} s"
    return "ok"


class _Metrics:
    """A registry per app (several apps may share a process), filled at each scrape."""

    def __init__(self, node: NodeState, limiter: Limiter) -> None:
        self.node = node
        self.limiter = limiter
        self.registry = CollectorRegistry()
        self.families: list[Metric] = []
        self.registry.register(self)
        self.lock = asyncio.Lock()  # one scrape's queries at a time

    def collect(self) -> Iterable[Metric]:
        return self.families

    async def render(self, engine: Engine) -> bytes:
        async with self.lock:
            families = self._process(engine)
            try:
                async with asyncio.timeout(SCRAPE_TIMEOUT_S):
                    families += await _database_families(engine)
                read = 1
            except Exception as exc:  # the process's own numbers still go out
                log.warning("metrics: could not read the database (%s)", type(exc).__name__)
                read = 0
            families.append(
                _gauge("scrape_database_ok", "1: this scrape read the database's numbers", read)
            )
            # No await between the two: another scrape cannot swap the families in between.
            self.families = families
            return generate_latest(self.registry)

    def _process(self, engine: Engine) -> list[Metric]:
        started = self.node.started_at
        families: list[Metric] = [
            _gauge("start_time_seconds", "When this node started (Unix time)", started),
            _gauge(
                "streams",
                "WebSockets and event streams open on sessions, in this process",
                self.limiter.open_streams(),
            ),
        ]
        try:
            pool = engine.pool
        except Exception:  # not open: no pool to describe
            return families
        families += [
            _gauge("db_pool_connections", "Pooled connections open", pool.get_size()),
            _gauge("db_pool_idle_connections", "Pooled connections idle", pool.get_idle_size()),
            _gauge("db_pool_max_connections", "Pool size limit", pool.get_max_size()),
        ]
        return families


async def _database_families(engine: Engine) -> list[Metric]:
    async with engine.pool.acquire() as conn:
        runs = await run_counts(conn, TURN_WORKFLOW)
        calls = await usage_totals(conn)
    turns = GaugeMetricFamily("threadline_turns", "Turn runs by status", labels=["status"])
    by_status = dict.fromkeys(RUN_STATUSES, 0) | runs.by_status
    pending = dict.fromkeys([TURN_QUEUE, "default", *engine.queues], 0) | runs.pending
    for status, n in by_status.items():
        turns.add_metric([status], n)
    queues = GaugeMetricFamily(
        "threadline_queue_pending", "Runs waiting to start, per queue", labels=["queue"]
    )
    for queue, n in sorted(pending.items()):
        queues.add_metric([queue], n)
    tokens = CounterMetricFamily(
        "threadline_llm_tokens", "Model tokens, cache hits left out", labels=["direction"]
    )
    tokens.add_metric(["input"], calls.input_tokens)
    tokens.add_metric(["output"], calls.output_tokens)
    return [
        turns,
        queues,
        tokens,
        CounterMetricFamily("threadline_spend_usd", "Ledger spend in USD", float(calls.spend)),
        _gauge("spend_today_usd", "Ledger spend in USD since 00:00 UTC", float(calls.today)),
        CounterMetricFamily(
            "threadline_cache_hits", "Model calls answered by the cache", calls.cache_hits
        ),
    ]


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"threadline_{name}", help_text, value=value)
