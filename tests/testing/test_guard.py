"""The network guard: a test that reaches beyond this machine fails, and says why, even when
the code under test swallowed the error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from threadline.testing import NetworkBlocked, NetworkGuard

from .inner import run_pytest

INNER = """
import socket, urllib.request
import pytest
from threadline.llm import Message, get_model


def test_a_connection_out_fails():
    socket.create_connection(("203.0.113.7", 443), timeout=1)


def test_a_swallowed_lookup_still_fails():
    try:
        urllib.request.urlopen("https://api.anthropic.com/v1/messages", timeout=1)
    except OSError:
        pass


async def test_a_provider_sdk_is_stopped():
    model = get_model("openai:gpt-4o-mini", api_key="k", base_url="https://api.openai.com/v1")
    try:
        await model.request([Message.user("Hi")])
    except Exception:
        pass


def test_this_machine_is_fine():
    server = socket.create_server(("127.0.0.1", 0))
    socket.create_connection(server.getsockname(), timeout=1).close()
    socket.getaddrinfo("localhost", 80)
    server.close()


@pytest.mark.threadline_network
def test_a_marked_test_may_go_out():
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex(("203.0.113.7", 443))  # not refused by the guard
    sock.close()
"""


def test_a_run_with_tests_that_reach_out(tmp_path: Path) -> None:
    (tmp_path / "test_out.py").write_text(INNER)
    run = run_pytest(tmp_path, "-q", "-o", "asyncio_mode=auto", "test_out.py")
    out = run.stdout
    assert "3 failed, 2 passed" in out, out + run.stderr
    assert "refused a connection to ('203.0.113.7', 443)" in out
    assert "refused a lookup of 'api.anthropic.com'" in out
    assert "refused a lookup of 'api.openai.com'" in out
    assert "@pytest.mark.threadline_network" in out  # what to do about it


def test_what_the_guard_lets_through() -> None:
    guard = NetworkGuard(frozenset({"db.internal"}))
    assert all(map(guard.host_allowed, ["localhost", "127.0.0.1", "::1", "[::1]", "db.internal"]))
    assert not any(map(guard.host_allowed, ["api.openai.com", "203.0.113.7", "10.0.0.2"]))


def test_inside_a_test_the_guard_is_on(threadline_guard: NetworkGuard) -> None:
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("203.0.113.9", 80), timeout=1)
    assert threadline_guard.take_violations()  # wanted here: taken back, the test passes
