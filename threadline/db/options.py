"""The `--database-url` option every `threadline` command that reads the database takes."""

from __future__ import annotations

import click

__all__ = ["database_url_option"]

database_url_option = click.option(
    "--database-url",
    envvar="DATABASE_URL",
    default=None,
    help="PostgreSQL URL. Default: $DATABASE_URL, else the embedded server.",
)
