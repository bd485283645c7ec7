"""The audit log: what the admin, operators and tenants' backends do is recorded (who, what,
which session or key, from where), what a session's own user does is not; rows are never
changed; the dashboard, the API and the command line list them."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner

from threadline.cli import main
from threadline.db import audit

from .conftest import ADMIN, Server, logged_in


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def _entries(server: Server, **params: Any) -> list[dict[str, Any]]:
    r = await server.http.get("/v1/audit", params=params, headers=ADMIN)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()
    return found[::-1]  # oldest first


async def test_admin_and_backend_actions_are_recorded_a_users_own_are_not(
    server: Server,
) -> None:
    made = (await server.http.post("/v1/keys", json={"tenant": "acme"}, headers=ADMIN)).json()
    key, prefix = made["key"], made["prefix"]
    session = (
        await server.http.post(
            "/v1/sessions", json={"agent": "echo", "user": "u-1"}, headers=_bearer(key)
        )
    ).json()
    sid = session["session_id"]
    messages = f"/v1/sessions/{sid}/messages"
    r = await server.http.post(
        messages, params={"token": session["token"]}, json={"client_id": "c1", "text": "hi"}
    )
    assert r.status_code == 202
    assert (await server.http.get(messages, params={"token": session["token"]})).status_code == 200
    assert (await server.http.get(messages, headers=_bearer(key))).status_code == 200
    assert (await server.http.post(f"/v1/sessions/{sid}/token", headers=ADMIN)).status_code == 200
    assert (await server.http.post(f"/v1/sessions/{sid}/revoke", headers=_bearer(key))).is_success
    r = await server.http.post(
        f"/v1/sessions/{sid}/operator",
        json={"text": "A person here.", "operator": "dana", "state": "handoff"},
        headers=ADMIN,
    )
    assert r.status_code == 200
    export = f"/v1/sessions/{sid}/export"
    assert (await server.http.get(export, params={"format": "md"}, headers=ADMIN)).is_success
    assert (await server.http.delete(f"/v1/sessions/{sid}", headers=ADMIN)).status_code == 204
    assert (await server.http.delete(f"/v1/keys/{prefix}", headers=ADMIN)).status_code == 200

    target = f"session:{sid}"
    found = [(e["actor"], e["action"], e["target"], e["detail"]) for e in await _entries(server)]
    assert found == [
        ("admin", "key.created", f"key:{prefix}", {"tenant": "acme"}),
        # the user's own message and read: not recorded
        (f"key:{prefix}", "session.read", target, {"what": "messages"}),
        ("admin", "session.token_issued", target, {}),
        (f"key:{prefix}", "session.tokens_revoked", target, {"generation": 1}),
        ("admin", "operator.replied", target, {"operator": "dana", "chars": 14}),
        ("admin", "session.state_set", target, {"state": "handoff"}),
        ("admin", "session.read", target, {"what": "export md"}),
        ("admin", "session.deleted", target, {}),
        ("admin", "key.revoked", f"key:{prefix}", {"tenant": "acme"}),
    ]
    entries = await _entries(server, target=target, action="session.read")
    assert [e["actor"] for e in entries] == [f"key:{prefix}", "admin"]
    assert {e["address"] for e in entries} == {"127.0.0.1"}
    assert key not in json.dumps(await _entries(server))  # a key by its prefix, never whole


async def test_dashboard_logins_and_reads_are_recorded_and_listed(server: Server) -> None:
    r = await server.http.post("/dashboard/login", data={"key": "guess"})
    assert r.status_code == 401
    session = await server.new_session()
    sid = session["session_id"]
    await audit.record(
        server.sessions.engine.pool, "cli:x", "budget.set", "budget:tenant:<b>evil</b>",
        {"usd": "<script>alert(1)</script>"},
    )  # fmt: skip
    async with logged_in(server) as dashboard:
        assert (await dashboard.get(f"/dashboard/sessions/{sid}")).status_code == 200
        page = (await dashboard.get("/dashboard/audit")).text
        filtered = await dashboard.get("/dashboard/audit", params={"action": "session.read"})
    found = [(e["actor"], e["action"], e["detail"]) for e in await _entries(server)]
    assert found == [
        ("dashboard", "dashboard.login_failed", {"way": "key"}),
        ("cli:x", "budget.set", {"usd": "<script>alert(1)</script>"}),
        ("dashboard", "dashboard.login", {"way": "key"}),
        ("dashboard", "session.read", {"what": "dashboard"}),
    ]
    assert "dashboard.login_failed" in page and f'href="/dashboard/sessions/{sid}"' in page
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>evil" not in page
    assert "session.read" in filtered.text and "dashboard.login_failed" not in filtered.text


async def test_an_entry_is_never_changed(server: Server) -> None:
    pool = server.sessions.engine.pool
    await audit.record(pool, "admin", "key.created", "key:tlk_x")
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE threadline.audit_log SET actor = 'someone else'")
    assert [e.actor for e in await audit.recent(pool)] == ["admin"]


def test_the_command_line_records_and_lists(database_url: str) -> None:
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(main, list(args), env={"DATABASE_URL": database_url})
        assert result.exit_code == 0, result.output
        return result.stdout

    key = cli("keys", "create", "--tenant", "acme").strip()
    cli("budgets", "set", "tenant:acme", "5", "--daily")
    cli("budgets", "remove", "tenant:acme", "--daily")
    cli("keys", "revoke", key[:12])
    rows = json.loads(cli("audit", "--json"))[::-1]
    assert [(r["action"], r["target"]) for r in rows] == [
        ("key.created", f"key:{key[:12]}"),
        ("budget.set", "budget:tenant:acme"),
        ("budget.removed", "budget:tenant:acme"),
        ("key.revoked", f"key:{key[:12]}"),
    ]
    assert all(r["actor"].startswith("cli") for r in rows)
    assert rows[1]["detail"] == {"usd": "5", "period": "daily"}
    table = cli("audit", "--action", "budget.set")
    assert "budget.set" in table and "key.created" not in table
