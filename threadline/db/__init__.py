"""Database access: where PostgreSQL is, connection pools, the embedded server, migrations."""

from .connect import (
    Connection,
    connect,
    create_pool,
    direct_database_url,
    redact,
    resolve_database_url,
)
from .embedded import (
    default_data_dir,
    restart_embedded,
    start_embedded,
    stop_embedded,
    temporary_data_dir,
)
from .migrations import pending, status, upgrade

__all__ = [
    "Connection",
    "connect",
    "create_pool",
    "default_data_dir",
    "direct_database_url",
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
