"""Security headers on every response, a Content-Security-Policy per kind of page (the
dashboard may not be framed; the chat pages may be, by the sites that embed the widget),
the Host header checked (DNS rebinding), and the API docs behind the admin key unless the
server listens on loopback only."""

from __future__ import annotations

import re

import httpx

from threadline.web.security import Hosts

from .conftest import ADMIN, Serve, Server


def directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {d.split(" ", 1)[0]: d.partition(" ")[2] for d in policy.split("; ")}


async def test_every_response_carries_the_headers(server: Server) -> None:
    session = await server.new_session()
    answers = [
        await server.http.get("/"),
        await server.http.get("/widget.js"),
        await server.http.get("/v1/sessions"),  # 401
        await server.http.get(f"/v1/sessions/{session['session_id']}?token={session['token']}"),
        await server.http.get("/nothing-here"),  # 404
        await server.http.get("/", headers={"host": "rebind.evil"}),  # 400
        await server.http.post("/v1/sessions", content=b"x" * (2 << 20)),  # 413
    ]
    assert [r.status_code for r in answers] == [200, 200, 401, 200, 404, 400, 413]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", r.url
        assert r.headers["referrer-policy"] == "same-origin"
        assert "content-security-policy" in r.headers


async def test_the_dashboard_may_not_be_framed_nor_run_inline_scripts(server: Server) -> None:
    for path in ("/dashboard/login", "/dashboard"):
        r = await server.http.get(path)
        policy = directives(r)
        assert policy["frame-ancestors"] == "'none'" and r.headers["x-frame-options"] == "DENY"
        assert policy["script-src"] == "'self'"
        assert policy["form-action"] == "'self'" and policy["object-src"] == "'none'"


async def test_the_chat_pages_run_only_their_own_scripts(server: Server) -> None:
    first, second = await server.http.get("/"), await server.http.get("/")
    nonces = []
    for r in (first, second):
        policy = directives(r)
        (nonce,) = re.findall(r"'nonce-([^']+)'", policy["script-src"])
        assert f'<script nonce="{nonce}">' in r.text  # the demo page's one inline script
        assert "unsafe-inline" not in policy["script-src"]
        nonces.append(nonce)
    assert nonces[0] != nonces[1]  # a nonce per response
    page = await server.http.get("/chat/echo")
    policy = directives(page)
    assert "<script>" not in page.text  # scripts come from files
    # The widget's own origin (WebSocket included) and the sites that embed it.
    host = server.url.removeprefix("http://")
    assert policy["connect-src"] == f"'self' ws://{host} wss://{host}"
    assert policy["frame-ancestors"] == "'self' https://shop.example"
    assert "x-frame-options" not in page.headers


async def test_the_api_docs_need_the_admin_key_unless_on_loopback(serve: Serve) -> None:
    async with serve() as server:
        for path in ("/docs", "/openapi.json"):
            assert (await server.http.get(path)).status_code == 401
            assert (await server.http.get(path, headers=ADMIN)).status_code == 200
        assert (await server.http.get("/redoc")).status_code == 404
        docs = await server.http.get("/docs", headers=ADMIN)
        (nonce,) = re.findall(r"'nonce-([^']+)'", directives(docs)["script-src"])
        assert f'<script nonce="{nonce}">' in docs.text and "<script>" not in docs.text
    async with serve(public_docs=True) as server:
        r = await server.http.get("/openapi.json")
        assert r.status_code == 200 and "/v1/sessions" in r.json()["paths"]


async def test_hosts_the_server_answers_to(serve: Serve) -> None:
    hosts = Hosts.serving("0.0.0.0", ["https://chat.example.com"])
    assert hosts.allows("chat.example.com") and hosts.allows("chat.example.com:443")
    assert hosts.allows("localhost:8000") and hosts.allows("[::1]:8000")
    assert hosts.allows("192.168.1.20:8000")  # an address cannot be rebound
    assert not hosts.allows("rebind.evil:8000") and not hosts.allows(None)
    assert hosts.own_origin("https://chat.example.com", "127.0.0.1:8000")
    loopback = Hosts.serving("127.0.0.1")
    assert not loopback.allows("192.168.1.20:8000") and loopback.allows("127.0.0.1:8000")
    named = Hosts.serving("chat.internal")
    assert named.allows("chat.internal:8000") and not named.allows("10.0.0.1")
    async with serve(hosts=Hosts.serving("127.0.0.1", ["https://chat.example.com"])) as server:
        r = await server.http.get("/", headers={"host": "chat.example.com"})
        assert r.status_code == 200
        r = await server.http.get("/", headers={"host": "chat.example.com.evil"})
        assert r.status_code == 400
