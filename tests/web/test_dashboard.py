"""The dashboard: behind the admin key, showing costs, sessions with per-turn costs, and
workflow runs with their steps."""

from __future__ import annotations

import json

import httpx

from threadline.web.dashboard import COOKIE

from ..chat_server import ChatServer, frames_until


async def test_the_dashboard_needs_the_admin_key(chat: ChatServer) -> None:
    r = await chat.http.get("/dashboard", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"
    r = await chat.http.post("/dashboard/login", data={"key": "wrong"})
    assert r.status_code == 401 and "not the admin key" in r.text
    r = await chat.http.post("/dashboard/login", data={"key": "admin-key"}, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.cookies["threadline_admin"]
    async with httpx.AsyncClient(base_url=chat.url, cookies={COOKIE: cookie}) as admin:
        r = await admin.get("/dashboard")
        assert r.status_code == 200 and "Costs" in r.text
    forged = cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB")
    async with httpx.AsyncClient(base_url=chat.url, cookies={COOKIE: forged}) as intruder:
        r = await intruder.get("/dashboard")
        assert r.status_code == 303


async def test_sessions_turn_costs_and_runs_are_shown(chat: ChatServer) -> None:
    session = await chat.new_session()
    async with chat.connect(session) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "message.send", "client_id": "m1", "text": "<b>hi</b>"}))
        await frames_until(ws, "message.end")
    sid = session["session_id"]
    async with httpx.AsyncClient(base_url=chat.url, follow_redirects=True) as admin:
        login = await admin.post("/dashboard/login", data={"key": "admin-key"})
        assert login.status_code == 200 and "Costs" in login.text  # redirected to overview
        listing = await admin.get("/dashboard/sessions")
        assert sid in listing.text
        detail = await admin.get(f"/dashboard/sessions/{sid}")
        assert "demo:threadline-demo" in detail.text and "&lt;b&gt;hi&lt;/b&gt;" in detail.text
        assert "<b>hi</b>" not in detail.text  # escaped, never markup
        runs = await admin.get("/dashboard/runs?status=succeeded")
        run_id = f"turn:{sid}:1"
        assert run_id in runs.text
        run = await admin.get(f"/dashboard/runs/{run_id}")
        assert "route:demo:threadline-demo" in run.text and "commit" in run.text
        overview = await admin.get("/dashboard")
        assert "demo:threadline-demo" in overview.text
