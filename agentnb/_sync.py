"""``agentnb.run_sync()``: run an agent from synchronous code."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ._exceptions import LoopAlreadyRunning
from ._run import run
from ._sinks import SinkLike

__all__ = ["run_sync"]


def run_sync(
    agent: Callable[..., Any] | str,
    /,
    *args: Any,
    sink: SinkLike | Sequence[SinkLike] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run *agent* to completion from synchronous code and return its value.

    Starts an event loop for the run (``asyncio.run``); Ctrl-C cancels the run,
    whose sinks still get the Cancelled event. Inside a running loop use
    ``await agentnb.run(...)`` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop here: the normal case (run below, outside this handler)
    else:
        raise LoopAlreadyRunning
    return asyncio.run(run(agent, *args, sink=sink, name=name, **kwargs))
