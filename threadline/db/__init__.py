"""Database access: where PostgreSQL is, connection pools, the embedded server, migrations."""

from .connect import connect, create_pool, redact, resolve_database_url
from .embedded import (
    default_data_dir,
    restart_embedded,
    start_embedded,
    stop_embedded,
    temporary_data_dir,
)
from .migrations import pending, status, upgrade

__all__ = [
    "connect",
    "create_pool",
    "default_data_dir",
    "pending",
    "redact",
    "resolve_database_url",
    "restart_embedded",
    "start_embedded",
    "status",
    "stop_embedded",
    "temporary_data_dir",
    "upgrade",
]
