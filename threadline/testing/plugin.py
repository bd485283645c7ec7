"""The pytest plugin (entry point `threadline`, on as soon as threadline is installed).

Fixtures (all of them sync: they work with pytest-asyncio in "auto" and "strict" mode):

- `threadline_database_url`: a fresh migrated database for the test, cloned from a template
  on one server per test session (`DATABASE_URL`'s, else an embedded PostgreSQL).
- `threadline_server`: `async with threadline_server(agents, model=..., cassette=...) as s`
  serves the agents in-process on a free port (`TestServer`: `url`, `sessions`, `http`,
  `new_session`, `client`, `ledger_rows`).
- `threadline_page`: `async with threadline_page(server, "support") as widget` opens the
  widget in Chromium on a host page of another origin (`WidgetPage`).
- `threadline_cassette`: this test's cassette (`cassettes/<module>/<test>.json` beside the
  test file), replayed, or recorded with `--threadline-record` / `THREADLINE_RECORD=1`.
- `threadline_site`: the host pages' static server (one per test session).
- `threadline_guard`: the network guard (`take_violations()` takes back wanted refusals).

The network guard (`guard.py`) is on for every test; `@pytest.mark.threadline_network` lets
one out, and so does recording a cassette. Knowledge embeds with the fast hash embedder
unless `THREADLINE_EMBEDDER` says otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .guard import NetworkGuard

# The rest is imported by the fixtures that need it: this module is loaded by every pytest
# run wherever threadline is installed.
if TYPE_CHECKING:
    from ..agents import Agent
    from ..llm import Model
    from .browser import WidgetPage
    from .cassette import Cassette
    from .database import TestDatabases
    from .server import TestServer
    from .site import HostSite

RECORD_ENV = "THREADLINE_RECORD"
_GUARD = NetworkGuard()
_NETWORK_OPEN = pytest.StashKey[bool]()

ServerFactory = Callable[..., "contextlib.AbstractAsyncContextManager[TestServer]"]
PageFactory = Callable[..., "contextlib.AbstractAsyncContextManager[WidgetPage]"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("threadline")
    group.addoption(
        "--threadline-record",
        action="store_true",
        help="Record the cassettes of tests that use `threadline_cassette` (real model calls).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "threadline_network: the test may connect beyond this machine (the threadline "
        "plugin's network guard lets it)",
    )
    os.environ.setdefault("THREADLINE_EMBEDDER", "hash")
    _GUARD.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    _GUARD.uninstall()


def _guarded(item: pytest.Item) -> bool:
    open_ = item.get_closest_marker("threadline_network") or item.stash.get(_NETWORK_OPEN, False)
    return not open_


def _phase(item: pytest.Item) -> Generator[None, object, object]:
    with _GUARD.checking(_guarded(item)):
        try:
            return (yield)
        finally:
            refused = _GUARD.take_violations()
            if refused:
                pytest.fail("\n".join(dict.fromkeys(refused)), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _phase(item))


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def threadline_guard() -> NetworkGuard:
    """The network guard: `take_violations()` takes back refusals a test wanted."""
    return _GUARD


@pytest.fixture(scope="session")
def threadline_databases() -> Iterator[TestDatabases]:
    from .database import TestDatabases, run_sync

    databases = TestDatabases.start()
    yield databases
    run_sync(databases.close())


@pytest.fixture
def threadline_database_url(threadline_databases: TestDatabases) -> Iterator[str]:
    from .database import run_sync

    url = run_sync(threadline_databases.create())
    yield url
    run_sync(threadline_databases.drop(url))


@pytest.fixture(scope="session")
def threadline_site() -> Iterator[HostSite]:
    from .site import HostSite

    site = HostSite()
    yield site
    site.close()


@pytest.fixture
def threadline_server(threadline_database_url: str, threadline_site: HostSite) -> ServerFactory:
    from .server import serve_agents

    @contextlib.asynccontextmanager
    async def start(
        agents: Iterable[Agent],
        *,
        model: Model | str | None = None,
        cassette: Cassette | None = None,
        origins: Sequence[str] = (),
        model_options: dict[str, dict[str, Any]] | None = None,
    ) -> AsyncIterator[TestServer]:
        allowed = (threadline_site.origin, *origins)
        async with serve_agents(
            threadline_database_url,
            agents,
            model=model,
            cassette=cassette,
            origins=allowed,
            model_options=model_options,
        ) as server:
            yield server

    return start


@pytest.fixture
def threadline_page(threadline_site: HostSite) -> PageFactory:
    pytest.importorskip("playwright", reason="the browser fixture needs Playwright")
    from .browser import open_widget

    def start(
        server: TestServer,
        agent: str | None = None,
        *,
        page: str | Path | None = None,
        **attrs: str,
    ) -> contextlib.AbstractAsyncContextManager[WidgetPage]:
        return open_widget(threadline_site, server, agent, page=page, **attrs)

    return start


def cassette_path(item: pytest.Item) -> Path:
    name = re.sub(r"[^\w.-]+", "_", item.name).strip("_")
    return item.path.parent / "cassettes" / item.path.stem / f"{name}.json"


@pytest.fixture
def threadline_cassette(request: pytest.FixtureRequest) -> Iterator[Cassette]:
    recording = bool(request.config.getoption("--threadline-record")) or os.environ.get(
        RECORD_ENV, ""
    ).lower() in ("1", "true", "yes")
    if recording:  # the calls go to the real provider
        request.node.stash[_NETWORK_OPEN] = True
        _GUARD.enabled = False
    from .cassette import Cassette

    path = cassette_path(request.node)
    try:
        cassette = Cassette(path, "record" if recording else "replay")
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield cassette
    if cassette.misses:
        pytest.fail("\n".join(cassette.misses), pytrace=False)
