"""``agentnb.run_sync()``: run an agent from synchronous code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ._exceptions import LoopAlreadyRunning
from ._registry import AgentLike
from ._run import run
from ._sinks import SinkLike

__all__ = ["run_sync"]  # set_nested_runner is for fronts, not users

NestedRunner = Callable[[Coroutine[Any, Any, Any]], Any]
_nested_runner: NestedRunner | None = None


def set_nested_runner(runner: NestedRunner | None) -> NestedRunner | None:
    """Let a front run ``run_sync`` inside a running loop; return the previous runner.

    Core never nests event loops itself. The notebook front registers one that
    is safe on ipykernel 7 (nest-asyncio2), for the synchronous entry points
    that cannot simply be awaited.
    """
    global _nested_runner
    previous, _nested_runner = _nested_runner, runner
    return previous


def run_sync(
    agent: AgentLike,
    /,
    *args: Any,
    sink: SinkLike | Sequence[SinkLike] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run *agent* to completion from synchronous code and return its value.

    Starts an event loop for the run (``asyncio.run``); Ctrl-C cancels the run,
    whose sinks still get the Cancelled event. Inside a running loop use
    ``await agentnb.run(...)`` instead; in a Jupyter kernel with the notebook
    front loaded, ``run_sync`` also works there: it nests the kernel's loop with
    nest-asyncio2, which patches that loop for the rest of the session (the one
    place agentnb does so; everything else awaits).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop here: the normal case (run below, outside this handler)
    else:
        if _nested_runner is None:
            raise LoopAlreadyRunning
        return _nested_runner(run(agent, *args, sink=sink, name=name, **kwargs))
    return asyncio.run(run(agent, *args, sink=sink, name=name, **kwargs))
