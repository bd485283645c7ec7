"""`threadline ...`: the command line. Each group of commands has its module; this one makes
them one `threadline` command (`main`, the console script)."""

from __future__ import annotations

import logging

import click

from ..ledger.cli import budgets_group
from ..rag.cli import cache_group, ingest
from ..web.keys_cli import audit_command, keys_group
from .common import console, err_console, load_app
from .cost_report import costs, parse_since
from .project import new
from .schema import db_group
from .server import chat, serve
from .workflows import demo, runs, start, worker

__all__ = ["console", "err_console", "load_app", "main", "parse_since"]


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log what threadline does.")
def main(verbose: bool) -> None:
    """threadline: durable, cost-aware LLM conversations and workflows on PostgreSQL."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for command in (db_group, worker, runs, start, costs, serve, chat, demo, new):
    main.add_command(command)
for command in (ingest, cache_group, budgets_group, keys_group, audit_command):
    main.add_command(command)
