import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

import threadline
from threadline.loop import YOUNG_THRESHOLD, settle_heap, start_eagerly


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


@pytest.fixture
def gc_restored() -> Iterator[tuple[int, int, int]]:
    """The collector's thresholds before the test; they and its frozen objects are restored."""
    thresholds = gc.get_threshold()
    yield thresholds
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_settle_heap_moves_what_is_alive_out_of_the_collectors_reach(
    gc_restored: tuple[int, int, int],
) -> None:
    kept = [1, 2]  # a list: tracked by the collector
    settle_heap()
    later = [3, 4]
    seen = gc.get_objects()  # what the collector walks (frozen objects are not in it)
    assert not any(o is kept for o in seen)
    assert any(o is later for o in seen)


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_after_settle_heap_cyclic_garbage_is_still_collected_without_being_asked(
    gc_restored: tuple[int, int, int],
) -> None:
    settle_heap()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *gc_restored[1:])
    freed: list[int] = []
    first = _Node()
    weakref.finalize(first, freed.append, 1)
    del first
    for _ in range(3 * YOUNG_THRESHOLD):  # more new objects than the threshold
        _Node()
    assert freed == [1]


def test_start_eagerly_runs_a_coroutine_that_need_not_wait_in_the_callers_step() -> None:
    async def main() -> None:
        done: list[str] = []

        async def write() -> None:
            done.append("written")

        assert start_eagerly(write()) is None  # no task: it finished at once
        assert done == ["written"]

        async def refuse() -> None:
            raise ConnectionResetError("gone")

        with pytest.raises(ConnectionResetError, match="gone"):
            start_eagerly(refuse())

    threadline.run(main())


def test_start_eagerly_hands_a_coroutine_that_must_wait_to_a_task_that_carries_it_on() -> None:
    async def main() -> None:
        steps: list[str] = []
        gate = asyncio.Event()

        async def write() -> str:
            steps.append("begun")
            await gate.wait()  # the socket cannot take it yet
            await asyncio.sleep(0)  # a bare yield on the way
            steps.append("written")
            return "sent"

        task = start_eagerly(write())
        assert task is not None and steps == ["begun"]  # it ran up to the wait, here
        await asyncio.sleep(0.01)
        assert not task.done()
        gate.set()
        assert await task == "sent"
        assert steps == ["begun", "written"]

        async def fails_later() -> None:
            await asyncio.sleep(0)
            raise BrokenPipeError("closed")

        failing = start_eagerly(fails_later())
        assert failing is not None
        with pytest.raises(BrokenPipeError):
            await failing

        async def cleans_up() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                steps.append("cleaned up")

        waiting = start_eagerly(cleans_up())
        assert waiting is not None
        await asyncio.sleep(0)
        waiting.cancel()  # a cancel reaches the coroutine where it waits
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert steps[-1] == "cleaned up"

    threadline.run(main())
