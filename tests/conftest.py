"""Shared test set-up: every test fails if it leaves a task running or a context variable set.

The suite is in folders by front (core, notebook, server, client, browser, bench);
the tools that drive the real fronts are in the repository's ``harness`` package.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from agentnb._run import _ambient_sinks, _current_run

# Helper modules with assertions of the tests they serve: pytest explains their failures too.
pytest.register_assert_rewrite("tests.browser.pages", "tests.notebook.views")


def _assert_clean_context(when: str) -> None:
    run = _current_run.get()
    assert run is None, f"{when}: agentnb's current run is still set to {run!r}"
    ambient = _ambient_sinks.get()
    assert ambient == (), f"{when}: capture sinks are still set: {ambient!r}"


async def _assert_no_tasks(when: str) -> None:
    me = asyncio.current_task()
    # Give tasks that are already finishing (a cancelled run) a few loop turns.
    for _ in range(20):
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left:
            return
        await asyncio.sleep(0)
    for task in left:
        task.cancel()
    names = ", ".join(t.get_name() for t in left)
    raise AssertionError(f"{when}: tasks still running: {names}")


def _leak_checked(
    fn: Callable[..., Coroutine[Any, Any, Any]],
) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        finally:
            _assert_clean_context(f"after {fn.__name__}")
            await _assert_no_tasks(f"after {fn.__name__}")

    return wrapper


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":  # nbval re-runs a tutorial in a real kernel
            item.add_marker(pytest.mark.kernel)
        fn = getattr(item, "obj", None)
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(fn):
            item.obj = _leak_checked(fn)


@pytest.fixture(autouse=True)
def _clean_sync_context() -> Iterator[None]:
    """For sync tests (and as a backstop): the test's own context is left as found."""
    _assert_clean_context("before the test")
    yield
    _assert_clean_context("after the test")
