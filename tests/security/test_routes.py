"""Every route, WebSocket and SSE stream, asked as an attacker would: with no credentials,
another session's token, an expired token, a forged one, a revoked one, another tenant's
API key, and from a page whose name was rebound to the server (DNS rebinding). The table
names what each must answer; a route added without a row fails
`test_the_table_has_a_row_for_every_route`."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
import websockets

from threadline.web.keys import ApiKeys

from ..helpers import endpoints
from .conftest import ADMIN as ADMIN_HEADERS
from .conftest import Server, token_for

PUBLIC = "public"  # anyone: pages, scripts
LINK = "link"  # the login form, whose ?token= is a login link (a wrong one is refused)
CREATE = "create"  # anyone may start a session (rates limit it)
LOGIN = "login"  # the dashboard's login: a wrong key is refused
SESSION = "session"  # the session's token (or the admin key, or its tenant's API key)
REFRESH = "refresh"  # as SESSION, but a token expired within the refresh window will do
BACKEND = "backend"  # the admin key or the session's tenant's API key, never a token
ADMIN = "admin"  # the admin key
DASHBOARD = "dashboard"  # the dashboard's cookie: else to the login
SOCKET = "socket"  # a session WebSocket: its token in the handshake

ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/"): PUBLIC,
    ("GET", "/widget.js"): PUBLIC,
    ("GET", "/chat/{agent}"): PUBLIC,
    ("GET", "/chat-page.js"): PUBLIC,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,  # ready: the test server's checks pass
    ("GET", "/metrics"): ADMIN,
    ("GET", "/docs"): ADMIN,
    ("GET", "/openapi.json"): ADMIN,
    ("GET", "/dashboard/login"): LINK,
    ("POST", "/dashboard/login"): LOGIN,
    ("GET", "/dashboard"): DASHBOARD,
    ("GET", "/dashboard/sessions"): DASHBOARD,
    ("GET", "/dashboard/sessions/{session_id}"): DASHBOARD,
    ("GET", "/dashboard/feedback"): DASHBOARD,
    ("GET", "/dashboard/runs"): DASHBOARD,
    ("GET", "/dashboard/runs/{run_id:path}"): DASHBOARD,
    ("GET", "/dashboard/audit"): DASHBOARD,
    ("POST", "/v1/sessions"): CREATE,
    ("GET", "/v1/sessions"): ADMIN,
    ("GET", "/v1/costs"): ADMIN,
    ("GET", "/v1/audit"): ADMIN,
    ("GET", "/v1/sessions/{session_id}"): SESSION,
    ("PATCH", "/v1/sessions/{session_id}"): SESSION,
    ("DELETE", "/v1/sessions/{session_id}"): SESSION,
    ("POST", "/v1/sessions/{session_id}/feedback"): SESSION,
    ("POST", "/v1/sessions/{session_id}/token"): REFRESH,
    ("POST", "/v1/sessions/{session_id}/revoke"): BACKEND,
    ("POST", "/v1/keys"): ADMIN,
    ("GET", "/v1/keys"): ADMIN,
    ("DELETE", "/v1/keys/{key}"): ADMIN,
    ("GET", "/v1/sessions/{session_id}/messages"): SESSION,
    ("POST", "/v1/sessions/{session_id}/messages"): SESSION,
    ("POST", "/v1/sessions/{session_id}/cancel"): SESSION,
    ("GET", "/v1/sessions/{session_id}/events"): SESSION,  # SSE
    ("GET", "/v1/sessions/{session_id}/export"): SESSION,
    ("POST", "/v1/sessions/{session_id}/operator"): ADMIN,
    ("POST", "/v1/sessions/{session_id}/ai-sdk"): SESSION,
    ("GET", "/v1/sessions/{session_id}/ai-sdk/stream"): SESSION,
    ("GET", "/v1/sessions/{session_id}/ai-sdk/{chat_id}/stream"): SESSION,
    ("WS", "/v1/sessions/{session_id}/ws"): SOCKET,
    ("WS", "/v1/sessions/{session_id}/ai-sdk/ws"): SOCKET,
}

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/sessions"): {"json": {"agent": "echo"}},
    ("POST", "/v1/keys"): {"json": {"tenant": "acme"}},
    ("POST", "/dashboard/login"): {"data": {"key": "not-the-key"}},
    ("PATCH", "/v1/sessions/{session_id}"): {"json": {"title": "mine now"}},
    ("POST", "/v1/sessions/{session_id}/feedback"): {"json": {"turn_id": "t", "rating": "up"}},
    ("POST", "/v1/sessions/{session_id}/messages"): {"json": {"client_id": "x", "text": "hi"}},
    ("POST", "/v1/sessions/{session_id}/operator"): {"json": {"text": "hello"}},
    ("POST", "/v1/sessions/{session_id}/ai-sdk"): {
        "json": {"id": "c", "messages": [{"id": "m", "role": "user", "parts": []}]}
    },
}

FORGER = "not-the-secret-but-as-long-as-one!!"  # signs what the server did not
CREDENTIALS = ["none", "other", "expired", "forged", "rebound", "revoked", "foreign_key"]

# What each kind of route answers each credential: an HTTP status, or a WebSocket's close
# code ("http 403": its handshake refused before it was accepted).
EXPECTED: dict[str, dict[str, int | str]] = {
    PUBLIC: {
        "none": 200, "other": 200, "expired": 200, "forged": 200, "rebound": 400,
        "revoked": 200, "foreign_key": 200,
    },
    LINK: {
        "none": 200, "other": 401, "expired": 401, "forged": 401, "rebound": 400,
        "revoked": 401, "foreign_key": 200,
    },
    CREATE: {
        "none": 201, "other": 201, "expired": 201, "forged": 201, "rebound": 400,
        "revoked": 201, "foreign_key": 201,
    },
    LOGIN: {
        "none": 401, "other": 401, "expired": 401, "forged": 401, "rebound": 400,
        "revoked": 401, "foreign_key": 401,
    },
    SESSION: {
        "none": 401, "other": 403, "expired": 401, "forged": 401, "rebound": 400,
        "revoked": 401, "foreign_key": 403,
    },
    REFRESH: {
        "none": 401, "other": 403, "expired": 200, "forged": 401, "rebound": 400,
        "revoked": 401, "foreign_key": 403,
    },
    BACKEND: {
        "none": 401, "other": 401, "expired": 401, "forged": 401, "rebound": 400,
        "revoked": 401, "foreign_key": 403,
    },
    ADMIN: {
        "none": 401, "other": 401, "expired": 401, "forged": 401, "rebound": 400,
        "revoked": 401, "foreign_key": 401,
    },
    DASHBOARD: {
        "none": 303, "other": 303, "expired": 303, "forged": 303, "rebound": 400,
        "revoked": 303, "foreign_key": 303,
    },
    SOCKET: {
        "none": 4401, "other": 4403, "expired": 4401, "forged": 4401, "rebound": "http 403",
        "revoked": 4401, "foreign_key": 4401,
    },
}  # fmt: skip


def credentials(
    kind: str, victim: dict[str, Any], other: dict[str, Any], held: dict[str, str]
) -> dict[str, Any]:
    """Query parameters, headers and cookies for a credential kind against `victim`
    (`held`: the victim's token from before a revocation, another tenant's API key)."""
    sid = victim["session_id"]
    forged_cookie = jwt.encode(
        {"adm": 1, "exp": 2**31}, "not-the-secret-of-at-least-32-bytes", "HS256"
    )
    return {
        "none": {},
        "other": {"token": other["token"]},
        "expired": {"token": token_for(sid, ttl=-60)},
        "forged": {
            "token": token_for(sid, secret=FORGER),
            "authorization": "Bearer not-the-admin-key",
            "cookie": forged_cookie,
        },
        "rebound": {"token": victim["token"], "host": "rebind.evil"},
        "revoked": {"token": held.get("revoked", "")},
        "foreign_key": {"authorization": f"Bearer {held.get('foreign_key', '')}"},
    }[kind]


def fill(path: str, victim: dict[str, Any]) -> str:
    return (
        path.replace("{session_id}", victim["session_id"])
        .replace("{agent}", "echo")
        .replace("{chat_id}", "chat-1")
        .replace("{run_id:path}", f"turn:{victim['session_id']}:1")
        .replace("{key}", "1")
    )


async def ask_http(
    server: Server, method: str, path: str, creds: dict[str, Any], victim: dict[str, Any]
) -> int:
    headers = {}
    if "authorization" in creds:
        headers["authorization"] = creds["authorization"]
    if "host" in creds:
        port = server.url.rsplit(":", 1)[1]
        headers["host"] = f"{creds['host']}:{port}"
    params = {"token": creds["token"]} if "token" in creds else {}
    cookies = {"threadline_admin": creds["cookie"]} if "cookie" in creds else {}
    async with httpx.AsyncClient(base_url=server.url, cookies=cookies, timeout=10) as client:
        request = client.build_request(
            method,
            fill(path, victim),
            params=params,
            headers=headers,
            **BODIES.get((method, path), {}),
        )
        response = await client.send(request, stream=True)  # an SSE stream would not end
        await response.aclose()
        return response.status_code


async def ask_socket(
    server: Server, path: str, creds: dict[str, Any], victim: dict[str, Any]
) -> int | str:
    url = server.url.replace("http", "ws") + fill(path, victim)
    if "token" in creds:
        url += f"?token={creds['token']}"
    if "host" in creds:
        # The handshake as a rebound page's would be: its Host is the attacker's name.
        request = {
            "host": creds["host"],
            "connection": "Upgrade",
            "upgrade": "websocket",
            "sec-websocket-version": "13",
            "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        r = await server.http.get(
            fill(path, victim), params={"token": creds["token"]}, headers=request
        )
        return f"http {r.status_code}"
    async with websockets.connect(url) as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_the_table_has_a_row_for_every_route(server: Server) -> None:
    assert endpoints(server.app.routes) == set(ROUTES)


@pytest.mark.parametrize("kind", CREDENTIALS)
async def test_every_route_answers_an_intruder_as_the_table_says(server: Server, kind: str) -> None:
    victim, other = await server.new_session(), await server.new_session()
    held: dict[str, str] = {}
    if kind == "revoked":  # the victim's backend revoked its tokens; it holds a new one
        held["revoked"] = victim["token"]
        r = await server.http.post(
            f"/v1/sessions/{victim['session_id']}/revoke", headers=ADMIN_HEADERS
        )
        victim = {**victim, "token": r.json()["token"]}
    if kind == "foreign_key":
        held["foreign_key"] = (await ApiKeys(server.sessions.engine.pool).create("globex"))[1]
    answers: dict[tuple[str, str], int | str] = {}
    for method, path in ROUTES:
        creds = credentials(kind, victim, other, held)
        if method == "WS":
            answers[method, path] = await ask_socket(server, path, creds, victim)
        else:
            answers[method, path] = await ask_http(server, method, path, creds, victim)
    expected = {route: EXPECTED[access][kind] for route, access in ROUTES.items()}
    assert answers == expected
    # Nothing an intruder sent reached the session.
    history = await server.http.get(
        f"/v1/sessions/{victim['session_id']}/messages?token={victim['token']}"
    )
    assert history.status_code == 200 and not [m for m in history.json() if m["role"] == "user"]
    info = await server.http.get(f"/v1/sessions/{victim['session_id']}?token={victim['token']}")
    assert info.status_code == 200 and info.json()["title"] != "mine now"


async def test_the_dashboard_asks_for_the_login_before_it_looks_anything_up(
    server: Server,
) -> None:
    """No 404 for a session that does not exist: which ids exist is not told."""
    victim = await server.new_session()
    for sid in (victim["session_id"], "s_does_not_exist"):
        r = await server.http.get(f"/dashboard/sessions/{sid}")
        assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
    r = await server.http.get("/dashboard/runs/x")
    assert r.status_code == 303
