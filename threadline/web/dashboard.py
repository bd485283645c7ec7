"""The dashboard (Jinja2, no build step): costs by day, model, agent and tenant; sessions
with their transcripts and per-turn costs; feedback; workflow runs with their step
timelines; the audit log (logins, transcripts read, keys, revocations, operator actions).

Every page but the login asks for the admin key's cookie before it reads anything (open
only when the server was started with `--open-dashboard`). The login takes the admin key,
or once the link `threadline serve` logs; failures from one address back off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..db import audit
from ..errors import UnknownRun
from ..ledger import Ledger
from ..ledger.reports import CallTotals, call_totals
from ..sessions import Sessions, UnknownSession, feedback
from ..sessions.reports import feedback_by_agent, recent_sessions
from . import login_links
from .auth import ADMIN_COOKIE_TTL, Auth
from .limits import Limiter, client_key, retry_after
from .security import Hosts

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates" / "dashboard"))
COOKIE = "threadline_admin"


def create_dashboard(
    sessions: Sessions,
    auth: Auth,
    limiter: Limiter,
    hosts: Hosts,
    *,
    open_access: bool,
    login_token: str | None = None,
) -> APIRouter:
    """`login_token`: a secret that logs a browser in once (`GET /dashboard/login?token=`);
    the links `login_links.make` stored work too."""
    router = APIRouter(include_in_schema=False)
    unregistered = [login_token] if login_token else []

    def pool() -> asyncpg.Pool:  # the pool exists once the engine has opened
        return sessions.engine.pool

    def admin(request: Request) -> None:
        """Before anything is read: what a page shows, or whether it exists, is the admin's."""
        if not (open_access or auth.is_admin_cookie(request.cookies.get(COOKIE))):
            raise HTTPException(303, "log in first", headers={"location": "/dashboard/login"})

    pages = APIRouter(prefix="/dashboard", dependencies=[Depends(admin)])

    def client(request: Request) -> str:
        return client_key(request.client.host if request.client else None)

    def throttle(request: Request) -> None:
        wait = limiter.logins.wait(client(request))
        if wait:
            raise HTTPException(
                429,
                "too many failed logins: try again later",
                headers={"retry-after": retry_after(wait)},
            )

    async def log(request: Request, action: str, target: str = "", **detail: Any) -> None:
        address = request.client.host if request.client else None
        await audit.record(pool(), "dashboard", action, target, detail, address)

    async def refused(request: Request, error: str, way: str) -> Response:
        limiter.logins.failed(client(request))
        await log(request, "dashboard.login_failed", way=way)
        return templates.TemplateResponse(request, "login.html", {"error": error}, status_code=401)

    async def logged_in(request: Request, way: str) -> Response:
        limiter.logins.succeeded(client(request))
        await log(request, "dashboard.login", way=way)
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(
            COOKIE,
            auth.issue_admin_cookie(),
            max_age=ADMIN_COOKIE_TTL,
            httponly=True,
            samesite="strict",
            # https as the client sees it: uvicorn takes X-Forwarded-Proto from a trusted proxy.
            secure=request.url.scheme == "https",
        )
        return response

    @router.get("/dashboard/login", response_class=HTMLResponse)
    async def login_form(request: Request, token: str | None = None) -> Response:
        if token is None:
            return templates.TemplateResponse(request, "login.html", {"error": None})
        throttle(request)
        while unregistered:  # a token given to the app: stored at first use of the page
            await login_links.make(pool(), unregistered.pop())
        if not await login_links.redeem(pool(), token):
            return await refused(
                request, "That login link was used already, or is not one.", "link"
            )
        return await logged_in(request, "link")

    @router.post("/dashboard/login")
    async def login(request: Request, key: Annotated[str, Form(max_length=4096)]) -> Response:
        if not hosts.own_origin(request.headers.get("origin"), request.headers.get("host")):
            raise HTTPException(403, "the login form is posted from this server's own pages")
        throttle(request)
        if not auth.is_admin_key(key):
            return await refused(request, "That is not the admin key.", "key")
        return await logged_in(request, "key")

    @pages.get("", response_class=HTMLResponse)
    async def overview(request: Request) -> Response:
        ledger = Ledger(pool())
        week = datetime.now(UTC) - timedelta(days=14)
        days = await ledger.report("day", since=week)
        return templates.TemplateResponse(
            request,
            "overview.html",
            {
                "days": sorted(days, key=lambda r: r.key),
                "peak": max([r.cost_usd for r in days] or [Decimal(0)]) or Decimal(1),
                "models": await ledger.report("model"),
                "agents": await ledger.report("agent"),
                "tenants": await ledger.report("tenant"),
                "totals": await _totals(pool()),
            },
        )

    @pages.get("/sessions", response_class=HTMLResponse)
    async def session_list(request: Request) -> Response:
        async with pool().acquire() as conn:
            found = await recent_sessions(conn, limit=200)
        return templates.TemplateResponse(request, "sessions.html", {"sessions": found})

    @pages.get("/sessions/{session_id}", response_class=HTMLResponse)
    async def session_detail(request: Request, session_id: str) -> Response:
        try:
            info = await sessions.get(session_id)
        except UnknownSession:
            raise HTTPException(404, "no such session") from None
        await log(request, "session.read", f"session:{session_id}", what="dashboard")
        calls = await Ledger(pool()).calls(session_id=session_id)
        ratings = await sessions.ratings(session_id)
        by_turn: dict[str, list[dict[str, Any]]] = {}
        for call in calls:
            by_turn.setdefault(call["turn_id"] or "", []).append(call)
        context = {
            "session": info,
            "messages": await sessions.history(session_id),
            "calls": by_turn,
            "ratings": ratings,
            "total": sum((c["cost_usd"] or Decimal(0) for c in calls), Decimal(0)),
        }
        return templates.TemplateResponse(request, "session.html", context)

    @pages.get("/feedback", response_class=HTMLResponse)
    async def feedback_list(request: Request) -> Response:
        async with pool().acquire() as conn:
            found = await feedback.recent(conn, limit=200)
            by_agent = await feedback_by_agent(conn)
        context = {"feedback": found, "by_agent": by_agent}
        return templates.TemplateResponse(request, "feedback.html", context)

    @pages.get("/audit", response_class=HTMLResponse)
    async def audit_page(
        request: Request, action: str | None = None, target: str | None = None
    ) -> Response:
        found = await audit.recent(pool(), limit=500, action=action or None, target=target or None)
        context = {"entries": found, "action": action or "", "target": target or ""}
        return templates.TemplateResponse(request, "audit.html", context)

    @pages.get("/runs", response_class=HTMLResponse)
    async def runs(request: Request, status: str | None = None) -> Response:
        found = await sessions.engine.list_runs(status=status, limit=100)
        return templates.TemplateResponse(request, "runs.html", {"runs": found, "status": status})

    @pages.get("/runs/{run_id:path}", response_class=HTMLResponse)
    async def run_detail(request: Request, run_id: str) -> Response:
        try:
            run = await sessions.engine.get_run(run_id)
        except UnknownRun:
            raise HTTPException(404, "no such run") from None
        steps = await sessions.engine.get_steps(run_id)
        start = run.started_at or run.created_at
        timeline = [
            {"step": s, "offset_ms": (s.created_at - start).total_seconds() * 1000} for s in steps
        ]
        return templates.TemplateResponse(request, "run.html", {"run": run, "timeline": timeline})

    router.include_router(pages)
    return router


async def _totals(pool: asyncpg.Pool) -> CallTotals:
    async with pool.acquire() as conn:
        return await call_totals(conn)
