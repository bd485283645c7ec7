"""The dashboard's login: throttled per address, a cookie that is HttpOnly, SameSite=Strict,
Secure over https and revoked by a new admin key, a form no other site can post, a login
link that works once; the cookie reads what the dashboard links to and changes nothing."""

from __future__ import annotations

import asyncio
from http.cookies import SimpleCookie

import httpx

from threadline.web import Auth
from threadline.web.dashboard import COOKIE
from threadline.web.limits import Limits

from .conftest import ADMIN_KEY, Serve, Server, logged_in


def cookie_flags(response: httpx.Response) -> dict[str, str | bool]:
    jar: SimpleCookie = SimpleCookie()
    jar.load(response.headers["set-cookie"])
    morsel = jar[COOKIE]
    return {
        "httponly": bool(morsel["httponly"]),
        "secure": bool(morsel["secure"]),
        "samesite": morsel["samesite"],
        "path": morsel["path"],
    }


async def test_failed_logins_back_off_per_address(serve: Serve) -> None:
    limits = Limits(login_failures=3, login_backoff=0.2)
    async with serve(limits=limits) as server:
        for _ in range(3):
            r = await server.http.post("/dashboard/login", data={"key": "guess"})
            assert r.status_code == 401
        # Locked out: even the right key waits, and is told how long.
        r = await server.http.post("/dashboard/login", data={"key": ADMIN_KEY})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        await asyncio.sleep(0.25)
        r = await server.http.post("/dashboard/login", data={"key": "guess again"})
        assert r.status_code == 401  # tried: the next wait doubles
        r = await server.http.post("/dashboard/login", data={"key": ADMIN_KEY})
        assert r.status_code == 429
        await asyncio.sleep(0.45)
        r = await server.http.post("/dashboard/login", data={"key": ADMIN_KEY})
        assert r.status_code == 303  # and the count starts over
        r = await server.http.post("/dashboard/login", data={"key": "guess"})
        assert r.status_code == 401


async def test_the_cookie_is_strict_http_only_and_secure_over_https(server: Server) -> None:
    r = await server.http.post("/dashboard/login", data={"key": ADMIN_KEY})
    assert r.status_code == 303
    assert cookie_flags(r) == {"httponly": True, "secure": False, "samesite": "strict", "path": "/"}
    # Behind a proxy (on this machine: uvicorn trusts it) that says the client used https.
    r = await server.http.post(
        "/dashboard/login", data={"key": ADMIN_KEY}, headers={"x-forwarded-proto": "https"}
    )
    assert cookie_flags(r)["secure"] is True


async def test_a_new_admin_key_logs_every_browser_out(server: Server) -> None:
    old = Auth(secret=server.auth.secret, admin_key="the-key-before")
    cookie = old.issue_admin_cookie()
    assert old.is_admin_cookie(cookie) and not server.auth.is_admin_cookie(cookie)
    async with httpx.AsyncClient(base_url=server.url, cookies={COOKIE: cookie}) as stale:
        r = await stale.get("/dashboard")
        assert r.status_code == 303
    async with logged_in(server) as admin:
        assert (await admin.get("/dashboard")).status_code == 200


async def test_no_other_site_can_post_the_login_form(server: Server) -> None:
    evil = {"origin": "https://evil.example"}
    r = await server.http.post("/dashboard/login", data={"key": ADMIN_KEY}, headers=evil)
    assert r.status_code == 403 and "set-cookie" not in r.headers
    # Nor a site allowed to embed the widget: it is not the dashboard's.
    shop = {"origin": "https://shop.example"}
    r = await server.http.post("/dashboard/login", data={"key": ADMIN_KEY}, headers=shop)
    assert r.status_code == 403
    own = {"origin": server.url}
    r = await server.http.post("/dashboard/login", data={"key": ADMIN_KEY}, headers=own)
    assert r.status_code == 303


async def test_the_login_link_works_once(serve: Serve) -> None:
    async with serve(login_token="once-only-login-token") as server:
        link = "/dashboard/login?token=once-only-login-token"
        r = await server.http.get(link)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"
        assert cookie_flags(r)["httponly"] is True
        async with httpx.AsyncClient(base_url=server.url, cookies=r.cookies) as admin:
            assert (await admin.get("/dashboard")).status_code == 200
        async with httpx.AsyncClient(base_url=server.url) as again:
            r = await again.get(link)
            assert r.status_code == 401 and "set-cookie" not in r.headers


async def test_the_cookie_reads_the_export_the_dashboard_links_to_and_changes_nothing(
    server: Server,
) -> None:
    session = await server.new_session()
    sid = session["session_id"]
    async with logged_in(server) as admin:
        page = await admin.get(f"/dashboard/sessions/{sid}")
        assert f'/v1/sessions/{sid}/export?format=md"' in page.text
        r = await admin.get(f"/v1/sessions/{sid}/export?format=md")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/markdown")
        assert (await admin.get("/v1/sessions")).status_code == 200
        assert (await admin.get("/docs")).status_code == 200
        # A cookie rides along on requests a browser makes for other sites' pages too:
        # it changes nothing.
        r = await admin.post(f"/v1/sessions/{sid}/operator", json={"text": "hi"})
        assert r.status_code == 401
        r = await admin.delete(f"/v1/sessions/{sid}")
        assert r.status_code == 401


async def test_a_run_that_does_not_exist_is_not_found(server: Server) -> None:
    async with logged_in(server) as admin:
        r = await admin.get("/dashboard/runs/x")
        assert r.status_code == 404
        r = await admin.get("/dashboard/sessions/s_missing")
        assert r.status_code == 404


async def test_the_dashboard_opens_without_a_login_only_when_asked(serve: Serve) -> None:
    async with serve(open_dashboard=True, admin_key=None) as server:
        assert (await server.http.get("/dashboard")).status_code == 200
        session = await server.new_session()
        r = await server.http.get(f"/v1/sessions/{session['session_id']}/export")
        assert r.status_code == 200  # its export link too
        r = await server.http.post(f"/v1/sessions/{session['session_id']}/cancel")
        assert r.status_code == 401  # but it changes nothing
    async with serve(admin_key=None) as server:  # no key, not opened: closed
        assert (await server.http.get("/dashboard")).status_code == 303
        r = await server.http.post("/dashboard/login", data={"key": ""})
        assert r.status_code in (401, 422)
