"""Every Python block of the docs runs: extracted from the page as it is, its placeholders
(`...`, a model the test has no key for, a folder) replaced by what the test names below,
then executed on the embedded PostgreSQL, top-level `await` and all, and what it did checked.
A block this file does not know fails (a new example needs its entry here), and so does a
replacement whose text the page no longer has (the page changed: update the entry).
The tutorial's blocks are what `threadline new` writes: tests/test_tutorial.py compares
them, and tests/test_scaffold.py runs that project's tests."""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

import threadline
from threadline.rag import CacheScope, DocumentStore, Knowledge, SemanticCache
from threadline.scaffold import create_project

from .llm.servers import openai
from .llm.servers.base import Reply, Script, start_server
from .testing.inner import ROOT, run_pytest

DEMO = "demo:threadline-demo"  # the offline model: no key, no network
Namespace = dict[str, Any]


def blocks(page: str) -> list[str]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return [textwrap.dedent(b) for b in re.findall(r"```python\n(.*?)```", text, re.S)]


@dataclass
class Example:
    replace: dict[str, str] = field(default_factory=dict)
    check: Callable[[Namespace], Awaitable[None]] | None = None


async def _budgets_set(ns: Namespace) -> None:
    listed = {(b.scope, b.period) for b in await ns["budgets"].list()}
    assert ("tenant:acme", "total") in listed and ("global", "daily") in listed
    assert ("user:*", "daily") not in listed  # removed by the block's last call


async def _routed(ns: Namespace) -> None:
    answer = ns["answer"]
    assert answer.used_model == DEMO and answer.attempts and ns["shown"], answer


async def _charged(ns: Namespace) -> None:
    assert ns["answer"].text
    calls = await ns["models"].ledger.calls(tenant="acme")  # the block's own ledger
    assert [(c["model"], c["user_id"], c["session_id"]) for c in calls] == [
        ("threadline-demo", "u1", "s1")
    ], calls


async def _ingested(ns: Namespace) -> None:
    sources = [d.source for d in await ns["store"].documents(ns["kb"])]
    assert sources == ["guide.md"]  # faq/returns.md was ingested, then deleted


async def _cached(ns: Namespace) -> None:
    assert ns["hit"] is None  # looked up before the store
    hit = await ns["cache"].lookup(ns["question"], ns["scope"])
    assert hit is not None and hit.answer.answer == ns["answer"]


async def _support_agent(ns: Namespace) -> None:
    support = ns["support"]
    assert support.name == "support" and "answering" in support.states


async def _workflow_ran(ns: Namespace) -> None:
    assert ns["printed"] == [["page at https://example.com"]]


EXAMPLES: dict[tuple[str, int], Example] = {
    ("docs/budgets.md", 0): Example(check=_budgets_set),
    ("docs/budgets.md", 1): Example(
        {
            '"anthropic:claude-sonnet-4-5"': f'"{DEMO}"',
            '"anthropic:claude-haiku-4-5", "ollama:llama3.2"': '"demo:a", "demo:b"',
        },
        _routed,
    ),
    ("docs/budgets.md", 2): Example({"Agent(...,": 'Agent(name="support",'}),
    ("docs/ledger.md", 0): Example({'"openai:gpt-4o-mini"': f'"{DEMO}"'}, _charged),
    ("docs/rag.md", 0): Example(check=_ingested),
    ("docs/rag.md", 1): Example(
        {"provider=..., model=..., cost_usd=...": 'provider="demo", model="m", cost_usd=0.01'},
        _cached,
    ),
    ("docs/rag.md", 2): Example({"model=...": f'model="{DEMO}"'}, _support_agent),
    ("docs/sessions.md", 0): Example({"tools=[...]": "tools=[]"}, _support_agent),
    ("README.md", 0): Example(
        {
            "...                                   # any side effect: retried, then journaled": (
                'return f"page at {url}"'
            ),
            "await ctx.sleep(24 * 3600)": "await ctx.sleep(0.01)",
            "async with Engine() as engine:": "async with Engine(database_url) as engine:",
            "print(await handle.result())": "printed.append(await handle.result())",
            "threadline.run(main())": "await main()",
        },
        _workflow_ran,
    ),
}
RUN_ELSEWHERE = {"docs/tutorial.md", "docs/testing.md"}  # the tests below, and test_tutorial


def test_every_block_of_the_docs_is_run() -> None:
    pages = sorted(
        str(p.relative_to(ROOT)) for p in [*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    )
    found = {
        (page, i) for page in pages if page not in RUN_ELSEWHERE for i, _ in enumerate(blocks(page))
    }
    assert found == set(EXAMPLES), f"blocks with no entry: {sorted(found - set(EXAMPLES))}"


async def _namespace(pool: asyncpg.Pool, database_url: str, folder: Path) -> Namespace:
    (folder / "faq").mkdir()
    (folder / "guide.md").write_text("# Guide\n\nHold the button for 3 seconds to reset.\n")
    (folder / "faq" / "returns.md").write_text("# Returns\n\nReturns within 30 days.\n")
    ledger = threadline.Ledger(pool)
    shown: list[str] = []
    ns: Namespace = {name: getattr(threadline, name) for name in threadline.__all__}
    ns.update(
        pool=pool,
        database_url=database_url,
        ledger=ledger,
        DocumentStore=DocumentStore,
        Knowledge=Knowledge,
        SemanticCache=SemanticCache,
        CacheScope=CacheScope,
        messages=[threadline.Message.user("How do I reset the filter light?")],
        shown=shown,
        show=shown.append,
        question="How do I reset the filter light?",
        answer="Hold the button for 3 seconds.",
        passages=[],
        KB_DIR=folder,
        printed=[],
        timedelta=timedelta,
    )
    return ns


@pytest.mark.parametrize(("page", "index"), sorted(EXAMPLES))
async def test_the_block_runs(
    page: str, index: int, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = EXAMPLES[(page, index)]
    code = blocks(page)[index]
    for old, new in example.replace.items():
        assert old in code, f"{page} block {index} no longer has {old!r}: update EXAMPLES"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)  # the blocks' relative paths ("docs/") are the test's
    docs = tmp_path / "docs"
    docs.mkdir()
    async with threadline.Engine(database_url, worker=False) as engine:
        ns = await _namespace(engine.pool, database_url, docs)
        compiled = compile(code, f"{page}:{index}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(compiled, ns)  # the docs' own example
        if result is not None:
            await result
        if example.check is not None:
            await example.check(ns)


@pytest.mark.processes
def test_the_testing_pages_tests_pass_in_a_new_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/testing.md's two tests, in a project `threadline new` wrote: the scripted model's
    as it is; the cassette's recorded once through the official OpenAI SDK (from a local
    server that speaks its protocol), then replayed with that server gone."""
    project = tmp_path / "shop"
    create_project(project)
    first, second = blocks("docs/testing.md")
    asked = '"How do I change the filter?"'
    assert asked in second, "docs/testing.md changed its cassette example: update this test"
    (project / "tests" / "test_docs_testing.py").write_text(f"{first}\n\n{second}")
    script = Script()
    script.default = Reply(text="To change the filter, turn it a quarter turn [1].")
    provider = start_server(openai.create_app(script), script)
    for key in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{provider.url}/v1")
    try:
        recorded = run_pytest(project, "-q", "tests/test_docs_testing.py", "--threadline-record")
    finally:
        provider.stop()
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert len(script.requests) == 1
    assert [p.name for p in (project / "tests" / "cassettes").rglob("*.json")] == [
        "test_support_answers.json"
    ]
    replayed = run_pytest(project, "-q", "tests/test_docs_testing.py")
    assert replayed.returncode == 0 and "2 passed" in replayed.stdout, replayed.stdout
