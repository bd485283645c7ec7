import asyncio

import pytest

import threadline


async def loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_run_uses_uvloop_where_installed() -> None:
    assert threadline.run(loop_module()).startswith("uvloop")


def test_threadline_loop_asyncio_keeps_asyncios_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADLINE_LOOP", "asyncio")
    assert threadline.run(loop_module()).startswith("asyncio")


def test_run_returns_the_result_and_raises_the_error() -> None:
    async def fail() -> None:
        raise ValueError("boom")

    assert threadline.run(asyncio.sleep(0, "done")) == "done"
    with pytest.raises(ValueError, match="boom"):
        threadline.run(fail())
