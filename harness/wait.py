"""Waiting for a state by looking at it, with a deadline: never by sleeping "long enough"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["eventually", "until"]


def until(
    check: Callable[[], object],
    timeout: float = 5.0,
    since: float | None = None,
    *,
    what: str = "",
    every: float = 0.0,
) -> float:
    """Poll *check* until it is true; the seconds since *since* (``perf_counter``; or now).

    Fails (``AssertionError``) *timeout* seconds after *since*. *every*: seconds between
    looks (0: look again at once, for a check that is cheap and a state that is quick).
    """
    start = time.perf_counter() if since is None else since
    while not check():
        if time.perf_counter() - start > timeout:
            raise AssertionError(f"not true within {timeout} s: {what or check}")
        if every:
            time.sleep(every)
    return time.perf_counter() - start


async def eventually(
    check: Callable[[], object], within: float = 5.0, *, what: str = "", every: float = 0.001
) -> float:
    """As :func:`until`, in a coroutine: the loop runs between looks (*every* seconds).

    Fails *within* seconds from now; returns the seconds it took.
    """
    start = time.perf_counter()
    while not check():
        if time.perf_counter() - start > within:
            raise AssertionError(f"not true within {within} s: {what or check}")
        await asyncio.sleep(every)
    return time.perf_counter() - start
