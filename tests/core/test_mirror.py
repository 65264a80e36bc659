"""Child runs started from outside their parent (``Run.start_child``) and mirror runs."""

from __future__ import annotations

import asyncio

import pytest

import agentnb
from agentnb._mirror import Mirror
from agentnb.testing import capture_events


async def test_a_mirror_tree_driven_from_one_task_ends_as_told_in_order() -> None:
    async def driver() -> str:
        root = agentnb.current_run()
        outer = Mirror(root, "outer")
        inner = outer.child("inner")
        inner.emit("deep text")
        outer.emit(agentnb.Status("outer status"))
        inner.end({"n": 1})
        await inner.ended()
        outer.end(error=ValueError("outer failed"))
        await outer.ended()
        gone = Mirror(root, "gone")
        gone.end(error=asyncio.CancelledError("not needed"))
        await gone.ended()
        return "driven"

    with capture_events() as events:
        assert await agentnb.run(driver) == "driven"
    assert [(e.path, e.kind) for e in events] == [
        (("driver", "outer", "inner"), "text"),
        (("driver", "outer"), "status"),
        (("driver", "outer", "inner"), "done"),
        (("driver", "outer"), "error"),
        (("driver", "gone"), "cancelled"),
        (("driver",), "done"),
    ]
    assert events[3].message == "outer failed"  # type: ignore[attr-defined]
    assert events[4].reason == "not needed"  # type: ignore[attr-defined]


async def test_a_parent_ends_after_mirrors_it_never_ended() -> None:
    async def driver() -> None:
        Mirror(agentnb.current_run(), "forgotten").emit("still open")

    with capture_events() as events:
        await agentnb.run(driver)
    assert [(e.path, e.kind) for e in events] == [
        (("driver", "forgotten"), "text"),
        (("driver", "forgotten"), "cancelled"),
        (("driver",), "done"),
    ]


async def test_start_child_of_an_ended_run_or_from_another_loop_is_refused() -> None:
    async def quick() -> None:
        pass

    run = agentnb.start(quick)
    await run.wait()
    with pytest.raises(agentnb.RunClosed):
        run.start_child(quick)

    async def waits() -> None:
        await asyncio.sleep(10)

    live = agentnb.start(waits)
    try:
        with pytest.raises(RuntimeError, match="on the loop of run"):
            await asyncio.to_thread(asyncio.run, _start_child_of(live))
    finally:
        live.cancel()
        with pytest.raises(agentnb.RunCancelled):
            await live.wait()


async def _start_child_of(run: agentnb.Run) -> None:
    async def child() -> None:
        pass

    run.start_child(child)
