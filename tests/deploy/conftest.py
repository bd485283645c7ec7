"""The deployment in deploy/, started for real on this machine: its files rendered with this
machine's ports and paths (their `{{NAME}}` placeholders, as deploy/README.md tells operators
to fill them), their processes started, and all of them killed when the test ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import asyncpg
import httpx
import pytest

from ..helpers import ROOT

DEPLOY = ROOT / "deploy"
PLACEHOLDER = re.compile(r"\{\{([A-Z0-9_]+)\}\}")
SECRET = "deploy-test-secret-of-at-least-32-bytes!!"
ADMIN_KEY = "deploy-test-admin-key"
THREADLINE = "/opt/threadline/bin/threadline"  # the units' {{THREADLINE}}; run as this Python
# Generous on 2 cores: four Python processes start at once, each importing the whole app.
START_TIMEOUT_S = 90.0


def render(name: str, **values: str) -> str:
    """deploy/NAME with its placeholders filled: every one of them, and only those."""
    text = (DEPLOY / name).read_text()
    wanted = set(PLACEHOLDER.findall(text))
    assert wanted == set(values), f"deploy/{name} has {sorted(wanted)}, given {sorted(values)}"
    return PLACEHOLDER.sub(lambda m: values[m[1]], text)


def unit_settings(name: str, **values: str) -> dict[str, str]:
    """The [Service] settings of deploy/systemd/NAME (the last of a repeated one)."""
    settings: dict[str, str] = {}
    for line in render(f"systemd/{name}", **values).splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def unit_command(name: str, instance: str, **values: str) -> list[str]:
    """The unit's ExecStart for `instance` (%i), run with this Python."""
    exec_start = unit_settings(name, THREADLINE=THREADLINE, APP_DIR=str(ROOT), **values)
    argv = shlex.split(exec_start["ExecStart"].replace("%i", instance))
    assert argv[0] == THREADLINE, argv
    return [sys.executable, "-m", "threadline.cli", *argv[1:]]


def env_file(**values: str) -> dict[str, str]:
    """deploy/env (the units' EnvironmentFile) as the variables it sets."""
    found: dict[str, str] = {}
    for line in render("env", **values).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            found[key.strip()] = value.strip()
    return found


def program(name: str) -> str:
    """The path of a program the deployment runs; scripts/test installs them."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(f"the deployment tests need {name}: scripts/test installs it (apt-get)")
    return found


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    killed: bool = False  # by the test, on purpose

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL to it and its children (nginx's workers outlive a killed master), and
        wait for it to be gone."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):  # its group is gone already
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)


class Fleet:
    """The processes a test starts, each writing to its own log under the test's folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[Proc] = []
        self._outputs: list[IO[bytes]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> Proc:
        log = self.folder / f"{name}.log"
        output = log.open("wb")
        self._outputs.append(output)
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(os.environ, **(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own: killed with its children
        )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def check(self) -> None:
        """Fail, with its log, if a process exited that nobody killed."""
        for proc in self.procs:
            code = proc.popen.poll()
            assert code is None or proc.killed, f"{proc.name} exited ({code}):\n{proc.tail()}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.tail()}" for p in self.procs)

    def close(self) -> None:
        """SIGKILL every process group, the last started first (the balancers before the
        nodes, PgBouncer last: no node logs its database going away)."""
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL: it will not
                proc.popen.wait(timeout=30)
        for output in self._outputs:
            output.close()


@pytest.fixture
def fleet(tmp_path: Path, database_url: str) -> Iterator[Fleet]:
    """Killed (SIGKILL) when the test ends, before its database is dropped. The processes'
    logs are printed: pytest shows them when the test failed."""
    started = Fleet(tmp_path)
    try:
        yield started
    finally:
        started.close()
        print(started.logs())


async def wait_for(
    fleet: Fleet, check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0
) -> float:
    """Poll the async `check` (a callable) every 20 ms until it is true, failing with the
    processes' logs if one exits or `timeout` passes; the seconds it took."""
    began = time.monotonic()
    while True:
        fleet.check()
        try:
            if await check():
                return time.monotonic() - began
        except (OSError, httpx.TransportError, asyncpg.PostgresError):
            pass  # not up yet
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what}\n{fleet.logs()}")
        await asyncio.sleep(0.02)
