"""Identity for embedders: a site's backend creates sessions for its signed-in users with its
tenant's API key (the browser never names a tenant or a user); keys are stored hashed,
listed with their last use, revocable; session tokens are refreshable for a while after
they expire and revocable by the backend, which closes the connections they opened."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from click.testing import CliRunner

from threadline.cli import main
from threadline.web.keys import ApiKeys

from ..chat_server import frames_until
from .conftest import ADMIN, Server, token_for


async def _key(server: Server, tenant: str) -> str:
    r = await server.http.post("/v1/keys", json={"tenant": tenant, "name": "site"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    assert body["key"].startswith(body["prefix"]) and body["tenant"] == tenant
    return str(body["key"])


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_a_backend_creates_sessions_for_its_users_and_only_in_its_tenant(
    server: Server,
) -> None:
    acme = await _key(server, "acme")
    r = await server.http.post(
        "/v1/sessions", json={"agent": "echo", "user": "u-42"}, headers=_bearer(acme)
    )
    assert r.status_code == 201, r.text
    session = r.json()
    info = await server.sessions.get(session["session_id"])
    assert (info.tenant, info.user_id) == ("acme", "u-42")

    # Another tenant named in the body, or the browser naming a user or a tenant: refused.
    r = await server.http.post(
        "/v1/sessions", json={"agent": "echo", "tenant": "globex"}, headers=_bearer(acme)
    )
    assert r.status_code == 403
    for body in ({"agent": "echo", "user": "u-42"}, {"agent": "echo", "tenant": "acme"}):
        r = await server.http.post("/v1/sessions", json=body)
        assert r.status_code == 403 and "API key" in r.json()["detail"]

    # The key reads its tenant's session; another tenant's key is told no.
    path = f"/v1/sessions/{session['session_id']}/messages"
    assert (await server.http.get(path, headers=_bearer(acme))).status_code == 200
    globex = await _key(server, "globex")
    assert (await server.http.get(path, headers=_bearer(globex))).status_code == 403

    # Listed without the key, with its last use; once revoked, refused (401, not anonymous).
    listed = (await server.http.get("/v1/keys", params={"tenant": "acme"}, headers=ADMIN)).json()
    assert len(listed) == 1 and "key" not in listed[0] and listed[0]["last_used_at"]
    async with server.sessions.engine.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT key_hash FROM threadline.api_keys WHERE tenant = 'acme'"
        )
    assert acme not in stored and len(stored) == 64  # its SHA-256, never the key
    assert (
        await server.http.delete(f"/v1/keys/{listed[0]['prefix']}", headers=ADMIN)
    ).status_code == 200
    r = await server.http.post("/v1/sessions", json={"agent": "echo"}, headers=_bearer(acme))
    assert r.status_code == 401
    assert (await server.http.get(path, headers=_bearer(acme))).status_code == 401


async def test_revoking_a_sessions_tokens_closes_what_they_opened(server: Server) -> None:
    acme = await _key(server, "acme")
    session = (
        await server.http.post(
            "/v1/sessions", json={"agent": "echo", "user": "u-1"}, headers=_bearer(acme)
        )
    ).json()
    sid, stolen = session["session_id"], session["token"]
    async with websockets.connect(server.ws_url(session)) as ws:
        await ws.send(json.dumps({"type": "resume", "after_seq": 0}))
        await frames_until(ws, "session.state")
        r = await server.http.post(f"/v1/sessions/{sid}/revoke", headers=_bearer(acme))
        assert r.status_code == 200
        fresh = r.json()["token"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401

    for token in (stolen, token_for(sid)):  # the old token, and any of that generation
        r = await server.http.get(f"/v1/sessions/{sid}", params={"token": token})
        assert (r.status_code, r.json()["detail"]) == (401, "the session's tokens were revoked")
        r = await server.http.post(f"/v1/sessions/{sid}/token", params={"token": token})
        assert r.status_code == 401  # nor can it be exchanged for a fresh one
    async with websockets.connect(server.ws_url(session, fresh)) as ws:  # the new one works
        await ws.send(json.dumps({"type": "message.send", "client_id": "c1", "text": "hi"}))
        assert (await frames_until(ws, "message.end"))[-1]["text"]


async def test_an_expired_token_is_exchanged_within_the_refresh_window(server: Server) -> None:
    """A widget opened again after days keeps its conversation; after the window, not."""
    sid = (await server.new_session())["session_id"]
    days_ago = token_for(sid, ttl=-3 * 86400)
    assert (
        await server.http.get(f"/v1/sessions/{sid}", params={"token": days_ago})
    ).status_code == 401
    r = await server.http.post(f"/v1/sessions/{sid}/token", params={"token": days_ago})
    assert r.status_code == 200
    assert (
        await server.http.get(f"/v1/sessions/{sid}", params={"token": r.json()["token"]})
    ).status_code == 200
    too_old = token_for(sid, ttl=-(server.auth.refresh_window + 60))
    r = await server.http.post(f"/v1/sessions/{sid}/token", params={"token": too_old})
    assert (r.status_code, r.json()["detail"]) == (401, "the session token has expired")


def test_keys_on_the_command_line(database_url: str) -> None:
    runner = CliRunner()

    def cli(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(main, list(args), env={"DATABASE_URL": database_url})
        return result.exit_code, result.stdout, result.stderr

    code, key, said = cli("keys", "create", "--tenant", "acme", "--name", "shop backend")
    assert code == 0 and key.strip().startswith("tlk_") and "shown once" in said
    code, listed, _ = cli("keys", "list", "--json")
    rows = json.loads(listed)
    assert [(r["tenant"], r["name"], r["revoked_at"]) for r in rows] == [
        ("acme", "shop backend", None)
    ]
    assert key.strip() not in listed
    code, out, _ = cli("keys", "revoke", str(rows[0]["id"]))
    assert code == 0 and "revoked" in out
    code, _, said = cli("keys", "revoke", str(rows[0]["id"]))
    assert code == 1 and "no live key" in said


async def test_a_key_is_checked_by_its_hash_not_its_prefix(server: Server) -> None:
    keys = ApiKeys(server.sessions.engine.pool)
    record, key = await keys.create("acme")
    found = await keys.verify(key)
    assert found is not None and found.id == record.id
    assert await keys.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert await keys.verify(record.prefix) is None
