"""The engine's statements, all in `queries.py`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import threadline.engine
from threadline import Engine
from threadline.engine import queries


async def test_every_flush_statement_is_valid(database_url: str) -> None:
    async with Engine(database_url, worker=False) as engine, engine.pool.acquire() as conn:
        for sql in queries.FLUSH.values():
            await conn.prepare(sql)
    assert len(queries.FLUSH) == 15


SQL_WORDS = ("SELECT ", "INSERT INTO", "UPDATE threadline", "DELETE FROM", "pg_notify")


@pytest.mark.parametrize(
    "module",
    sorted(p.name for p in Path(threadline.engine.__file__).parent.glob("*.py")),
)
def test_the_engines_statements_are_all_in_queries(module: str) -> None:
    """One place for the engine's SQL: no other module of the package holds a statement."""
    if module == "queries.py":
        return
    tree = ast.parse((Path(threadline.engine.__file__).parent / module).read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    statements = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and any(word in node.value for word in SQL_WORDS)
    ]
    assert statements == []
