"""No hang, no wrong terminal event (issue 9, point 7): stuck sinks, re-entrant inline
sinks, agents whose exception or result cannot be shown, Ctrl-C with a blocked thread.

Each of these hung or ended with a wrong terminal event before its fix. Nothing
here asserts how fast something is: a "hang" is a wait that never ends, so each
test gives a deadline far beyond the normal outcome, and fails at it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import agentnb
from agentnb import Event
from agentnb._run import SINK_GRACE
from harness import ROOT
from harness.wait import eventually
from tests.helpers import Recorder, forever

HANG = 10 * (1 + SINK_GRACE)  # seconds after which a wait counts as a hang


class Stuck:
    """An async sink whose send never returns."""

    def __init__(self) -> None:
        self.got: list[Event] = []
        self.closed = False

    async def send(self, event: Event) -> None:
        self.got.append(event)
        await forever()

    def close(self) -> None:
        self.closed = True


async def chatty() -> str:
    for i in range(3):
        agentnb.emit(f"{i} ")
    await forever()
    return "never"


async def quick() -> str:
    agentnb.emit("hi")
    return "ok"


async def test_a_timeout_ends_the_wait_for_a_run_whose_sink_never_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stuck, other = Stuck(), Recorder()
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="agentnb"), pytest.raises(TimeoutError):
        await asyncio.wait_for(agentnb.run(chatty, sink=[stuck, other]), 0.5)
    assert time.monotonic() - started < HANG
    assert other.kinds()[-1] == "cancelled"  # the other sink still got the whole run
    assert stuck.closed  # the stuck one was abandoned, and closed
    assert "was abandoned" in caplog.text


async def test_a_cancel_ends_run_wait_after_the_agent_finished_with_a_stuck_sink() -> None:
    stuck = Stuck()
    run = agentnb.start(quick, sink=stuck)
    waiter = asyncio.ensure_future(run.wait())
    ended = asyncio.Event()
    run.add_done_callback(lambda _run: ended.set())
    await ended.wait()
    assert run.status == "done"
    assert not waiter.done()  # the sink holds the wait: that is what a stuck sink does
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, HANG)
    [(sink, error)] = run.sink_errors
    assert sink is stuck
    assert isinstance(error, agentnb.SinkStuck)


async def test_leaving_a_stream_early_returns_even_with_a_stuck_sink() -> None:
    stuck = Stuck()
    async with agentnb.stream(chatty, sink=stuck) as events:
        async for _event in events:
            break
    run = events.run
    assert run.status == "cancelled"
    assert [type(e) for _, e in run.sink_errors] == [agentnb.SinkStuck]


async def test_a_second_cancel_abandons_a_stuck_sink_at_once() -> None:
    stuck, other = Stuck(), Recorder()
    caller = asyncio.ensure_future(agentnb.run(chatty, sink=[stuck, other]))
    await eventually(lambda: stuck.got, what="the stuck sink holding its first event")
    caller.cancel()
    # The run has ended (the other sink has its terminal event): the stuck one is waited for.
    await eventually(lambda: other.kinds()[-1:] == ["cancelled"], what="the run's end")
    caller.cancel()  # no need to wait out the grace period
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert time.monotonic() - started < SINK_GRACE


# -- agents whose outcome cannot be shown --------------------------------------------


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


async def raises_bad_str() -> None:
    raise BadStr


async def returns_bad_repr() -> BadRepr:
    return BadRepr()


async def returns_deep() -> list[object]:
    return nested(100_000)


async def test_an_exception_whose_str_raises_ends_the_run_with_its_error() -> None:
    rec = Recorder()
    with pytest.raises(BadStr):
        await agentnb.run(raises_bad_str, sink=rec)
    end = rec.events[-1]
    assert isinstance(end, agentnb.Error)
    assert end.type == "tests.core.test_hangs.BadStr"
    assert end.message == "<BadStr: str() failed: RuntimeError>"
    assert "raises_bad_str" in end.traceback


async def test_a_result_whose_repr_raises_ends_the_run_done() -> None:
    rec = Recorder()
    value = await agentnb.run(returns_bad_repr, sink=rec)
    assert isinstance(value, BadRepr)  # the agent's own value
    end = rec.events[-1]
    assert isinstance(end, agentnb.Done)
    assert end.result == "<BadRepr object: repr() failed: RuntimeError>"


async def test_a_result_nested_too_deep_to_show_ends_the_run_done() -> None:
    rec = Recorder()
    value = await agentnb.run(returns_deep, sink=rec)
    assert isinstance(value, list)
    end = rec.events[-1]
    assert isinstance(end, agentnb.Done)
    assert end.result == "<list object: repr() failed: RecursionError>"


# -- Ctrl-C while a sync agent blocks in its thread ------------------------------------

BLOCKED = textwrap.dedent(
    """
    import sys, time
    import agentnb

    def blocking(_):
        agentnb.emit("started\\n")
        print("started", flush=True)
        time.sleep(60)
        return "late"

    try:
        agentnb.run_sync(blocking, "x", sink=agentnb.ConsoleSink(sys.stderr))
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    """
)


def test_ctrl_c_in_run_sync_returns_without_waiting_for_a_blocked_sync_agent() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Ctrl-C as in a terminal: a job started in the background by a shell without job
    # control inherits SIGINT ignored (and so would this child, which Ctrl-C never reaches).
    terminal = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    proc = subprocess.Popen(
        [sys.executable, "-c", terminal + BLOCKED],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # the agent would block for 60 s
        waited = time.monotonic() - interrupted
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()  # what it said, and its pipes closed
        pytest.fail(f"still running 30 s after SIGINT; stdout {out!r}, stderr {err[-2000:]!r}")
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in out
    assert waited < 30
    assert "cancelled" in err  # the run ended cancelled, and the console said so
    assert "left to finish" in err  # and the thread still running was named
