"""Who holds an embedded data directory: what `postmaster.pid` (or a socket's lock file) says,
whether the server it names is alive and this directory's, and the removal of what dead
servers leave behind (see `embedded` for the lifecycle these serve)."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatabaseUnavailable

__all__ = [
    "LockFile",
    "check_owner",
    "clear_socket_lock",
    "clear_stale",
    "end_strays",
    "live_server",
    "user_name",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockFile:
    """What `postmaster.pid` (or a socket's `.lock` file, which starts the same) says."""

    pid: int
    started: float
    port: int
    socket_dir: Path | None
    status: str

    @classmethod
    def read(cls, path: Path) -> LockFile | None:
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


def live_server(lock: LockFile, pgdata: Path) -> Any | None:
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
        except psutil.AccessDenied:  # another user's (check_owner says so): only its age tells
            here = proc.create_time() <= lock.started + 2  # the file holds whole seconds
    except (psutil.NoSuchProcess, FileNotFoundError):
        return None
    return proc if here else None


def check_owner(proc: Any, pgdata: Path, user: str | None) -> None:
    want = pwd.getpwnam(user).pw_uid if user is not None else os.geteuid()
    have: int = proc.uids().real
    if have != want:
        owner = user_name(have)
        raise DatabaseUnavailable(
            f"{pgdata} is in use by a PostgreSQL server (pid {proc.pid}) of user {owner},"
            f" not {user_name(want)}: stop it (as {owner}: pg_ctl -D {pgdata} stop), or set"
            " THREADLINE_DATA_DIR to another directory"
        )


def clear_stale(pgdata: Path, lock: LockFile) -> None:
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    if lock.socket_dir is not None:
        clear_socket_lock(lock.socket_dir, pgdata, lock.port)
    end_strays(pgdata)


def clear_socket_lock(socket_dir: Path, pgdata: Path, port: int = 5432) -> None:
    """Remove a socket and its lock file that no live server of `pgdata` holds."""
    socket = socket_dir / f".s.PGSQL.{port}"
    lock = LockFile.read(socket.with_name(socket.name + ".lock"))
    if lock is not None and live_server(lock, pgdata) is None:
        socket.with_name(socket.name + ".lock").unlink(missing_ok=True)
        socket.unlink(missing_ok=True)


def end_strays(pgdata: Path) -> None:
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


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
