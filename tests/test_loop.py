import asyncio
import gc

import pytest

import threadline
from threadline.loop import settle_heap


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


def test_settle_heap_moves_what_is_alive_out_of_the_collectors_reach() -> None:
    kept = [1, 2]  # a list: tracked by the collector
    try:
        settle_heap()
        later = [3, 4]
        seen = gc.get_objects()  # what the collector walks (frozen objects are not in it)
        assert not any(o is kept for o in seen)
        assert any(o is later for o in seen)
    finally:
        gc.unfreeze()
