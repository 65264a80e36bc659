"""The leak checks themselves must be able to fail."""

from __future__ import annotations

import asyncio

import pytest

from agentnb._run import _current_run
from tests.conftest import _assert_clean_context, _assert_no_tasks


async def test_a_leftover_task_is_reported() -> None:
    task = asyncio.get_running_loop().create_task(asyncio.sleep(10), name="leftover")
    with pytest.raises(AssertionError, match="leftover"):
        await _assert_no_tasks("check")
    assert task.cancelled() or task.cancelling()
    await asyncio.wait([task])


def test_a_context_variable_left_set_is_reported() -> None:
    token = _current_run.set(object())  # type: ignore[arg-type]
    try:
        with pytest.raises(AssertionError, match="current run is still set"):
            _assert_clean_context("check")
    finally:
        _current_run.reset(token)
