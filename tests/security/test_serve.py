"""`threadline serve` as it starts by default: an admin key made once and kept (mode 600), a
login link in its log that works once, the dashboard open only with `--open-dashboard`;
and a real server probed as an attacker probed it (issue #20)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.chat_server import echo
from tests.web.test_processes import free_port, until_up
from threadline import Engine
from threadline.cli import main
from threadline.sessions import Sessions
from threadline.web import Hub
from threadline.web.serve import app_from_env, load_admin_key

from ..helpers import ROOT, kill


def test_a_first_start_makes_an_admin_key_only_its_owner_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("THREADLINE_ADMIN_KEY", raising=False)
    key = load_admin_key(tmp_path)
    assert len(key) >= 40 and load_admin_key(tmp_path) == key  # kept
    assert stat.S_IMODE((tmp_path / "admin-key").stat().st_mode) == 0o600
    monkeypatch.setenv("THREADLINE_ADMIN_KEY", "configured")
    assert load_admin_key(tmp_path) == "configured"


async def test_the_log_has_a_login_link_that_works_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    database_url: str,
) -> None:
    monkeypatch.delenv("THREADLINE_ADMIN_KEY", raising=False)
    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path))
    async with Engine(database_url) as engine:
        with caplog.at_level(logging.WARNING, logger="threadline.web.serve"):
            app, _ = app_from_env(
                Sessions(engine, [echo]),
                Hub(engine.url),
                host="127.0.0.1",
                port=8000,
                open_dashboard=False,
            )
        found = r"http://127\.0\.0\.1:8000(/dashboard/login\?token=\S+)"
        (link,) = re.findall(found, caplog.text)
        assert str(tmp_path / "admin-key") in caplog.text
        assert (tmp_path / "admin-key").read_text() not in caplog.text  # the key itself is not
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as web:
            r = await web.get(link)
            assert r.status_code == 303 and "threadline_admin" in r.cookies
            r = await web.get(link)
            assert r.status_code == 401


async def test_an_open_dashboard_is_asked_for_and_warned_about(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    database_url: str,
) -> None:
    monkeypatch.setenv("THREADLINE_DATA_DIR", str(tmp_path))
    async with Engine(database_url) as engine:
        with caplog.at_level(logging.WARNING, logger="threadline.web.serve"):
            sessions, hub = Sessions(engine, [echo]), Hub(engine.url)
            app_from_env(sessions, hub, host="0.0.0.0", port=80, open_dashboard=True)
    assert "the dashboard is open" in caplog.text and "login" not in caplog.text
    assert "--open-dashboard" in CliRunner().invoke(main, ["serve", "--help"]).output


@pytest.mark.processes
async def test_a_default_server_keeps_its_conversations_to_itself(
    tmp_path: Path, database_url: str
) -> None:
    """The probes of issue #20 against `threadline serve` as it starts with nothing set."""
    port = free_port()
    env = dict(
        {k: v for k, v in os.environ.items() if k != "THREADLINE_ADMIN_KEY"},
        DATABASE_URL=database_url,
        PYTHONUNBUFFERED="1",
        THREADLINE_DATA_DIR=str(tmp_path),
        THREADLINE_RATE_NEW_SESSIONS="2/60",
    )
    proc = start(env, "serve", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        await until_up(url, proc)
        async with httpx.AsyncClient(base_url=url, timeout=10) as web:
            r = await web.post("/v1/sessions", json={"agent": "support"})
            sid = r.json()["session_id"]
            r = await web.get(f"/dashboard/sessions/{sid}")
            assert (r.status_code, r.headers["location"]) == (303, "/dashboard/login")
            rebound = {"host": f"rebind.evil:{port}"}
            r = await web.get(f"/dashboard/sessions/{sid}", headers=rebound)
            assert r.status_code == 400
            r = await web.post("/v1/sessions", content=b"{" + b" " * (2 << 20) + b"}")
            assert r.status_code == 413
            r = await web.get("/v1/sessions?limit=-1")
            assert r.status_code == 401  # the admin's, and checked before the number
            await web.post("/v1/sessions", json={"agent": "support"})
            r = await web.post("/v1/sessions", json={"agent": "support"})
            assert r.status_code == 429 and "retry-after" in r.headers
        proc.terminate()
        output = (await asyncio.to_thread(proc.communicate, timeout=30))[0].decode()
        (link,) = re.findall(rf"{url}/dashboard/login\?token=\S+", output)
        assert stat.S_IMODE((tmp_path / "admin-key").stat().st_mode) == 0o600
        assert link
    finally:
        if proc.poll() is None:
            kill(proc)


def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "threadline.cli", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
