"""A nested event loop for ``agentnb.run_sync`` called inside the kernel's running loop.

Nothing else comes here (the magics become top-level awaits). ``run_sync`` is a
synchronous entry point, so in a cell, whose loop is already running, it can
only block by nesting that loop: nest-asyncio2 (>= 1.7.4) does that, applied to
the kernel's loop the first time such a call is made (it then stays patched for
the session; ``await agentnb.run(...)`` needs none of it). It keeps ipykernel
7's queued requests (the next cell of Run All) instead of losing them as
nest_asyncio 1.x does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from .._exceptions import AgentnbError

__all__ = ["run_nested"]


def _patch(loop: asyncio.AbstractEventLoop) -> None:
    cls = type(loop)
    if getattr(cls, "_nest_patched", False) and not hasattr(cls, "_nest_asyncio2"):
        raise AgentnbError(
            "this kernel's event loop was patched by nest_asyncio 1.x (some library called "
            "nest_asyncio.apply()), which makes ipykernel 7 silently skip queued cells. "
            "agentnb will not nest a loop on it: use `await agentnb.run(...)` or the "
            "%%agent magic in its own cell, or restart the kernel without that call."
        )
    try:
        import nest_asyncio2
    except ImportError:
        raise ImportError(
            "running an agent synchronously inside a notebook needs nest-asyncio2: "
            "pip install 'agentnb[notebook]' (or use `await agentnb.run(...)`)"
        ) from None
    nest_asyncio2.apply(loop)


def run_nested(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run *coro* to completion on the already-running loop of this thread.

    An interrupt (KeyboardInterrupt) cancels the run and waits for it to end
    before it propagates, so nothing streams on afterwards.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a terminal IPython: no loop runs here, so no nesting is needed
        return asyncio.run(coro)
    try:
        _patch(loop)
    except BaseException:
        coro.close()
        raise
    task = loop.create_task(coro)
    try:
        return loop.run_until_complete(task)
    except KeyboardInterrupt:
        task.cancel("interrupted")
        with contextlib.suppress(BaseException):
            loop.run_until_complete(task)
        raise
