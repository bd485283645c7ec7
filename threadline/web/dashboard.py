"""The dashboard (Jinja2, no build step): costs by day, model, agent and tenant; sessions
with their transcripts and per-turn costs; workflow runs with their step timelines.

Protected by the admin key (a signed cookie after logging in). With no admin key configured
it is open only when the server listens on the loopback interface (a local demo)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import jwt
from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..ledger import Ledger
from ..sessions import Sessions, UnknownSession, feedback
from .auth import Auth

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates" / "dashboard"))
COOKIE = "threadline_admin"


def create_dashboard(sessions: Sessions, auth: Auth, *, open_access: bool) -> APIRouter:
    router = APIRouter(prefix="/dashboard", include_in_schema=False)

    def pool() -> asyncpg.Pool:  # the pool exists once the engine has opened
        return sessions.engine.pool

    def allowed(request: Request) -> bool:
        if open_access:
            return True
        token = request.cookies.get(COOKIE)
        if not token:
            return False
        try:
            return bool(jwt.decode(token, auth.secret, algorithms=["HS256"]).get("adm"))
        except jwt.InvalidTokenError:
            return False

    def page(request: Request, name: str, **context: Any) -> Response:
        if not allowed(request):
            return RedirectResponse("/dashboard/login", status_code=303)
        return templates.TemplateResponse(request, name, context)

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"error": None})

    @router.post("/login")
    async def login(request: Request, key: str = Form(...)) -> Response:
        if not auth.is_admin(f"Bearer {key}"):
            return templates.TemplateResponse(
                request, "login.html", {"error": "That is not the admin key."}, status_code=401
            )
        token = jwt.encode({"adm": 1, "exp": int(time.time()) + 8 * 3600}, auth.secret)
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", max_age=8 * 3600)
        return response

    @router.get("", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        ledger = Ledger(pool())
        week = datetime.now(UTC) - timedelta(days=14)
        days = await ledger.report("day", since=week)
        return page(
            request,
            "overview.html",
            days=sorted(days, key=lambda r: r.key),
            peak=max([r.cost_usd for r in days] or [Decimal(0)]) or Decimal(1),
            models=await ledger.report("model"),
            agents=await ledger.report("agent"),
            tenants=await ledger.report("tenant"),
            totals=await _totals(pool()),
        )

    @router.get("/sessions", response_class=HTMLResponse)
    async def session_list(request: Request) -> Response:
        async with pool().acquire() as conn:
            rows = await conn.fetch(_SESSIONS)
        return page(request, "sessions.html", sessions=rows)

    @router.get("/sessions/{session_id}", response_class=HTMLResponse)
    async def session_detail(request: Request, session_id: str) -> Response:
        try:
            info = await sessions.get(session_id)
        except UnknownSession:
            raise HTTPException(404, "no such session") from None
        calls = await Ledger(pool()).calls(session_id=session_id)
        ratings = await sessions.ratings(session_id)
        by_turn: dict[str, list[dict[str, Any]]] = {}
        for call in calls:
            by_turn.setdefault(call["turn_id"] or "", []).append(call)
        return page(
            request,
            "session.html",
            session=info,
            messages=await sessions.history(session_id),
            calls=by_turn,
            ratings=ratings,
            total=sum((c["cost_usd"] or Decimal(0) for c in calls), Decimal(0)),
        )

    @router.get("/feedback", response_class=HTMLResponse)
    async def feedback_list(request: Request) -> Response:
        async with pool().acquire() as conn:
            found = await feedback.recent(conn, limit=200)
            by_agent = await conn.fetch(_FEEDBACK_BY_AGENT)
        return page(request, "feedback.html", feedback=found, by_agent=by_agent)

    @router.get("/runs", response_class=HTMLResponse)
    async def runs(request: Request, status: str | None = None) -> Response:
        found = await sessions.engine.list_runs(status=status, limit=100)
        return page(request, "runs.html", runs=found, status=status)

    @router.get("/runs/{run_id:path}", response_class=HTMLResponse)
    async def run_detail(request: Request, run_id: str) -> Response:
        run = await sessions.engine.get_run(run_id)
        steps = await sessions.engine.get_steps(run_id)
        start = run.started_at or run.created_at
        timeline = [
            {"step": s, "offset_ms": (s.created_at - start).total_seconds() * 1000} for s in steps
        ]
        return page(request, "run.html", run=run, timeline=timeline)

    return router


async def _totals(pool: Any) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_TOTALS)
    return dict(row) if row else {}


_TOTALS = """
SELECT count(*) AS calls,
       coalesce(sum(cost_usd), 0) AS cost,
       coalesce(sum(saved_usd), 0) AS saved,
       coalesce(sum(cost_usd) FILTER (WHERE at >= date_trunc('day', now())), 0) AS today,
       count(*) FILTER (WHERE status = 'cached') AS cached,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE fallback_reason IS NOT NULL) AS fallbacks
FROM threadline.llm_calls
"""

_FEEDBACK_BY_AGENT = """
SELECT agent, count(*) FILTER (WHERE rating > 0) AS up, count(*) FILTER (WHERE rating < 0) AS down
FROM threadline.session_feedback GROUP BY agent ORDER BY agent
"""

_SESSIONS = """
SELECT s.id, s.agent, s.title, s.tenant, s.state, s.status, s.updated_at,
       (SELECT count(*) FROM threadline.session_messages m WHERE m.session_id = s.id) AS messages,
       (SELECT count(*) FROM threadline.session_feedback f WHERE f.session_id = s.id
            AND f.rating < 0) AS thumbs_down,
       coalesce((SELECT sum(cost_usd) FROM threadline.llm_calls c WHERE c.session_id = s.id), 0)
           AS cost
FROM threadline.sessions s ORDER BY s.updated_at DESC LIMIT 200
"""
