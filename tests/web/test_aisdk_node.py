"""The `ai` package's own transports (`DefaultChatTransport`, `WebSocketChatTransport`, the
`Chat` behind `useChat`) against a real server: tests/node/aisdk.test.mjs, run by Node's test
runner with the server's URL and a session in its environment. `npm ci --prefix tests/node`
(scripts/test does it) installs the pinned package."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from ..chat_server import chat_server, echo
from .apps import AISDK_AGENTS
from .test_aisdk import cite_a_web_page

NODE_TESTS = Path(__file__).resolve().parents[1] / "node"


async def node_command() -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is not installed: the AI SDK transports are tested with it")
    if not (NODE_TESTS / "node_modules" / "ai" / "package.json").exists():
        pytest.fail(f"the 'ai' package is not installed: run npm ci --prefix {NODE_TESTS}")
    version = await asyncio.create_subprocess_exec(
        node, "--version", stdout=asyncio.subprocess.PIPE
    )
    major = int((await version.communicate())[0].decode().strip().lstrip("v").split(".")[0])
    # Node 22 has a global WebSocket; Node 20 (supported here) behind a flag.
    return [node, "--test", *(["--experimental-websocket"] if major < 22 else []), str(NODE_TESTS)]


@pytest.mark.processes
async def test_the_ai_sdk_transports_chat_with_the_server(
    database_url: str, tmp_path: Path
) -> None:
    command = await node_command()
    async with chat_server(database_url, [echo, *AISDK_AGENTS]) as chat:
        await cite_a_web_page(chat, tmp_path)
        session = await chat.new_session("counter")
        env = {
            **os.environ,
            "THREADLINE_URL": chat.url,
            "THREADLINE_SESSION": session["session_id"],
            "THREADLINE_TOKEN": session["token"],
        }
        node = await asyncio.create_subprocess_exec(
            *command,
            cwd=NODE_TESTS,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(180):
                output = (await node.communicate())[0].decode(errors="replace")
        finally:
            if node.returncode is None:
                node.kill()
                await node.wait()
    assert node.returncode == 0, f"node --test failed:\n{output}"
