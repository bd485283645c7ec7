"""The embedded server's lifecycle with real processes: a server left by a killed process is
adopted and stopped by the next one, stale lock files do not block a start, processes on one
data directory share one server, and a directory that cannot be used says why."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from threadline import DatabaseUnavailable, db
from threadline.db import embedded

from ..helpers import ROOT, kill

pytestmark = pytest.mark.processes

# Starts (or joins) the server on the data dir in argv[1], runs a query, prints the server's
# pid and holds on until a line comes in (then exits normally).
HOLDER = """
import asyncio, pathlib, sys
import asyncpg
from threadline import db

root = pathlib.Path(sys.argv[1])
url = db.start_embedded(root)

async def works() -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT 1")
    finally:
        await conn.close()

assert asyncio.run(works()) == 1
print((root / "pg" / "postmaster.pid").read_text().split()[0], flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data directory, not under pytest's tmp_path: as root the server runs as another
    user, who must be able to pass through the directory's parents, and every pytest session
    that starts makes /tmp/pytest-of-root private again (one starting alongside broke initdb)."""
    root = Path(tempfile.mkdtemp(prefix="tl-lifecycle-"))
    yield root
    leftover = root / "pg" / "postmaster.pid"
    if leftover.exists():  # a failed test: stop its server before its directory goes
        pid = int(leftover.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(10)
    shutil.rmtree(root, ignore_errors=True)


def hold(root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def server_of(holder: subprocess.Popen[str]) -> int:
    """The pid of the server `holder` uses, once it has run its query."""
    assert holder.stdout is not None
    line = holder.stdout.readline().strip()
    if not line.isdigit():
        _, err = holder.communicate(timeout=60)
        raise AssertionError(f"the holder failed: {err}")
    return int(line)


def kill_holder(holder: subprocess.Popen[str]) -> None:
    holder.kill()  # SIGKILL: no exit handler runs
    holder.communicate(timeout=60)


def release(holder: subprocess.Popen[str]) -> None:
    _, err = holder.communicate("\n", timeout=60)
    assert holder.returncode == 0, err


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_stopped(root: Path, server: int) -> None:
    assert not alive(server)
    assert not (root / "pg" / "postmaster.pid").exists()


def spawn_embedded_worker(root: Path) -> subprocess.Popen[bytes]:
    """`threadline worker` on the embedded server of `root`, once it says it is ready."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(THREADLINE_DATA_DIR=str(root), PYTHONUNBUFFERED="1")
    worker = subprocess.Popen(
        [sys.executable, "-m", "threadline.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert worker.stdout is not None
    seen = b""
    while b" ready " not in seen:
        line = worker.stdout.readline()
        assert line, f"the worker exited: {seen.decode(errors='replace')}"
        seen += line
    return worker


@pytest.mark.parametrize("ending", ["exit", "sigterm"])
def test_a_server_left_by_a_killed_process_is_adopted_and_stopped_by_the_next(
    data_dir: Path, ending: str
) -> None:
    first = hold(data_dir)
    server = server_of(first)
    kill_holder(first)
    assert alive(server)
    if ending == "exit":
        second = hold(data_dir)
        assert server_of(second) == server  # adopted, not restarted
        release(second)
    else:
        worker = spawn_embedded_worker(data_dir)
        assert int((data_dir / "pg" / "postmaster.pid").read_text().split()[0]) == server
        output = kill(worker, signal.SIGTERM)
        assert worker.returncode == 0, output
    assert_stopped(data_dir, server)


@pytest.mark.parametrize("holder", ["dead", "reused", "another server"])
def test_a_stale_postmaster_pid_does_not_block_a_start(
    data_dir: Path, holder: str, request: pytest.FixtureRequest
) -> None:
    first = hold(data_dir)
    server = server_of(first)
    pid_file = data_dir / "pg" / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    socket_lock = Path(lines[4]) / f".s.PGSQL.{lines[3]}.lock"
    socket_lines = socket_lock.read_text().splitlines()
    release(first)
    assert_stopped(data_dir, server)

    other: subprocess.Popen[bytes] | None = None
    if holder == "dead":
        done = subprocess.Popen(["true"])
        done.wait()
        pid = done.pid
    elif holder == "reused":  # an unrelated process now has the pid
        other = subprocess.Popen(["sleep", "60"])
        pid = other.pid
    else:  # a PostgreSQL server of another data directory has it
        pg_root = request.getfixturevalue("pg_root")
        request.getfixturevalue("server_url")
        pid = int((pg_root / "pg" / "postmaster.pid").read_text().split()[0])
    # What a server killed with its machine leaves: its lock files, naming a pid.
    pid_file.write_text("\n".join([str(pid), *lines[1:]]) + "\n")
    socket_lock.write_text("\n".join([str(pid), *socket_lines[1:]]) + "\n")
    try:
        second = hold(data_dir)
        restarted = server_of(second)
        assert restarted not in (server, pid)
        release(second)
        assert_stopped(data_dir, restarted)
        assert holder == "dead" or alive(pid)  # nobody else's process was touched
    finally:
        if other is not None:
            other.kill()
            other.wait()


def test_processes_starting_together_share_one_server_and_the_last_stops_it(
    data_dir: Path,
) -> None:
    holders = [hold(data_dir) for _ in range(3)]
    servers = {server_of(h) for h in holders}
    assert len(servers) == 1
    (server,) = servers
    postmasters = [
        p.pid
        for p in psutil.process_iter(["name"])
        if p.info["name"] == "postgres" and _works_in(p, data_dir / "pg") and not _forked(p)
    ]
    assert postmasters == [server]
    release(holders[0])
    release(holders[1])
    assert alive(server)  # one process still uses it
    release(holders[2])
    assert_stopped(data_dir, server)


def _works_in(proc: psutil.Process, directory: Path) -> bool:
    try:
        return os.path.samefile(proc.cwd(), directory)
    except (psutil.Error, OSError):
        return False


def _forked(proc: psutil.Process) -> bool:
    """A backend or helper process, which the postmaster forks."""
    try:
        parent = proc.parent()
        return parent is not None and parent.name() == "postgres"
    except psutil.Error:
        return False


def test_a_data_dir_locked_for_too_long_is_a_clear_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "LOCK_TIMEOUT", 0.2)
    with open(data_dir / "pg.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("4242\n")
        lock.flush()
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as failure:
            db.start_embedded(data_dir)
    assert time.monotonic() - started < 5
    assert str(data_dir) in str(failure.value)
    assert "end process 4242" in str(failure.value)
    assert not (data_dir / "pg").exists()


def test_a_data_dir_of_another_major_version_is_a_clear_error(data_dir: Path) -> None:
    (data_dir / "pg").mkdir()
    (data_dir / "pg" / "PG_VERSION").write_text("9.6\n")
    with pytest.raises(DatabaseUnavailable) as failure:
        db.start_embedded(data_dir)
    assert f"{data_dir / 'pg'} holds a PostgreSQL 9.6 database" in str(failure.value)
    assert "THREADLINE_DATA_DIR" in str(failure.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="as root the server runs as another user")
def test_a_server_of_another_user_is_a_clear_error_and_left_alone(data_dir: Path) -> None:
    first = hold(data_dir)
    server_of(first)
    pid_file = data_dir / "pg" / "postmaster.pid"
    lines = pid_file.read_text().splitlines()
    release(first)
    # A "postgres" working in the data directory as root, not as the server's own user.
    fake = data_dir / "postgres"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", fake)
    other = subprocess.Popen([str(fake), "60"], cwd=data_dir / "pg")
    try:
        pid_file.write_text("\n".join([str(other.pid), *lines[1:]]) + "\n")
        with pytest.raises(DatabaseUnavailable) as failure:
            db.start_embedded(data_dir)
        message = str(failure.value)
        assert f"in use by a PostgreSQL server (pid {other.pid}) of user root" in message
        assert str(data_dir / "pg") in message and "stop it" in message
        assert alive(other.pid) and pid_file.exists()
    finally:
        other.kill()
        other.wait()
        pid_file.unlink()
