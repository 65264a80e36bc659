"""The streamed kinds (reasoning, streamed tool calls, usage, steps, state) in the notebook
front: the live view's items in a real kernel, and the final transcript."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import agentnb
from agentnb import Done, ToolCall, Usage
from agentnb._format import call_line, state_line, usage_line
from agentnb.notebook import Transcript
from agentnb.testing import capture_events
from harness.kernel import Kernel
from tests.browser.streaming import ANSWER, ARGS, REASONING, STATE, thinker
from tests.notebook.views import all_items, items_of, view_of


def local() -> tuple[list[Any], Transcript]:
    """The thinker run here without pauses: its events and transcript."""
    transcript = Transcript()
    with capture_events() as events:
        agentnb.run_sync(thinker, "0")
    for event in events:
        transcript.add(event)
    return list(events), transcript


def totals() -> dict[str, Any]:
    events, _ = local()
    done = events[-1]
    assert isinstance(done, Done)
    assert done.usage is not None
    return done.usage


@pytest.fixture(scope="module")
def k() -> Iterator[Kernel]:
    kernel = Kernel({"AGENTNB_DEMO_SPEED": "0"})
    try:
        kernel.run_ok("%load_ext agentnb\nfrom tests.browser.streaming import thinker")
        yield kernel
    finally:
        kernel.close()


# -- the live view's items ------------------------------------------------------------


@pytest.mark.kernel
def test_streamed_parts_reach_the_view_whole_and_grow_in_place(k: Kernel) -> None:
    cell = k.run_ok("%%agent thinker\n0.3")  # a pause between parts: each goes in its batch
    comm = view_of(k, cell.msg_id)
    log = all_items(k, comm)
    reasoning = [item for item in log if item[0] == "reasoning"]
    assert "".join(item[2] for item in reasoning) == "".join(REASONING)
    assert {item[3] for item in reasoning} == {"m1"}
    # The arguments as they streamed: every fragment, in order, for the one call.
    calls = [item for item in log if item[0] == "call"]
    assert [item[1:4] for item in calls] == [["", "c1", "weather"]] * len(calls)
    assert "".join(item[4] for item in calls) == "".join(ARGS)
    assert len(calls) >= 3  # shown growing, batch after batch
    # Then the whole call, naming the streamed call whose place it takes.
    call = ToolCall("weather", json.loads("".join(ARGS)), call_id="c1")
    tool = next(item for item in log if item[0] == "tool")
    assert tool == ["tool", "", call_line(call, 40), json.dumps(call.args, indent=1), "c1"]
    assert log.index(tool) > log.index(calls[-1])
    steps = [(item[0], item[2], item[3]) for item in log if item[0].startswith("step")]
    assert steps == [
        ("step", "think", "s1"),
        ("step_end", "think", "s1"),
        ("step", "act", "s2"),
        ("step_end", "act", "s2"),
        ("step", "answer", "s3"),
        ("step_end", "answer", "s3"),
    ]
    assert ["state", "", state_line(agentnb.StateSnapshot(STATE))] in log
    assert "".join(item[2] for item in log if item[0] == "text") == "".join(ANSWER)
    # Usage: the sum so far after each call, and at the end the run's own totals.
    usage = [item for item in log if item[0] == "usage"]
    first = usage_line({"calls": 1, "input_tokens": 1200, "output_tokens": 45,
                        "reasoning_tokens": 30, "cached_tokens": 200, "cost": 0.0042})  # fmt: skip
    assert usage[0] == ["usage", "", first]
    assert usage[-1] == ["usage", "", usage_line(totals())]
    assert log[-1] == usage[-1]
    assert "usage" not in [item[0] for item in log[: log.index(usage[0])]]


@pytest.mark.kernel
def test_a_burst_of_streamed_parts_costs_few_items(k: Kernel) -> None:
    cell = k.run_ok("%%agent thinker\n0")
    comm = view_of(k, cell.msg_id)
    log = all_items(k, comm)
    kinds = [item[0] for item in log]
    assert len(items_of(k, comm)) <= 4  # the leading edge, a batch or two, the last
    # Each streamed part grew in place while unsent: one item, not one per piece.
    assert kinds.count("reasoning") == 1, kinds
    assert kinds.count("text") == 1, kinds
    assert kinds.count("usage") == 1, kinds
    reasoning = [item[2] for item in log if item[0] == "reasoning"]
    assert "".join(reasoning) == "".join(REASONING)
    # Arguments a burst never showed are not sent: the whole call line says it all.
    assert sum(len(item[4]) for item in log if item[0] == "call") <= len("".join(ARGS))
    assert log[-1] == ["usage", "", usage_line(totals())]


# -- the transcript -------------------------------------------------------------------


def test_the_transcript_ends_with_the_usage_and_leaves_reasoning_out() -> None:
    _, transcript = local()
    line = usage_line(totals())
    assert line == "2 model calls · 2,700 tokens in (200 cached) · 105 out (30 reasoning) · $0.0093"
    call = ToolCall("weather", json.loads("".join(ARGS)))
    assert transcript.plain() == (
        f'{call_line(call, 160)}\n← weather: {{"temp": 18}}\n{"".join(ANSWER)}\nusage: {line}'
    )
    markdown = transcript.markdown()
    assert markdown.endswith(
        "<em>usage: 2 model calls · 2&#44;700 tokens in &#40;200 cached&#41; · 105 out "
        "&#40;30 reasoning&#41; · &#36;0&#46;0093</em>\n\n</div>"
    )
    assert "I should call" not in markdown  # nor is the reasoning in the Markdown


def test_a_run_without_usage_has_no_usage_line() -> None:
    transcript = Transcript()
    with capture_events() as events:
        agentnb.run_sync(lambda: agentnb.emit("hi"))
    for event in events:
        transcript.add(event)
    assert transcript.plain() == "hi"


async def test_a_failed_or_cancelled_run_still_ends_with_its_usage() -> None:
    async def fails() -> None:
        agentnb.emit(Usage(10, 5, cost=2.5))
        raise ValueError("no")

    transcript = Transcript()
    with capture_events() as events, pytest.raises(ValueError):
        await agentnb.run(fails)
    for event in events:
        transcript.add(event)
    assert (
        transcript.plain() == "ValueError: no\nusage: 1 model call · 10 tokens in · 5 out · $2.50"
    )


# -- the shared lines -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("totals", "line"),
    [
        (None, ""),
        ({}, ""),
        ({"calls": 1, "input_tokens": 0, "output_tokens": 0}, "1 model call · 0 tokens in · 0 out"),
        ({"calls": 3, "input_tokens": 1234567, "output_tokens": 8, "cost": 0},
         "3 model calls · 1,234,567 tokens in · 8 out · $0.0000"),
        ({"calls": 1, "input_tokens": 1, "output_tokens": 1, "cost": 0.00001},
         "1 model call · 1 tokens in · 1 out · <$0.0001"),
        ({"calls": 1, "input_tokens": 1, "output_tokens": 1, "cost": 12.345},
         "1 model call · 1 tokens in · 1 out · $12.35"),
        # From another machine, anything: only counts and a finite cost are shown.
        ({"calls": "<b>", "input_tokens": -1, "output_tokens": True, "cost": "1",
          "reasoning_tokens": 1.5, "model": "<script>"}, ""),
    ],
)  # fmt: skip
def test_usage_lines(totals: dict[str, Any] | None, line: str) -> None:
    assert usage_line(totals) == line


def test_state_lines_are_brief() -> None:
    assert state_line(agentnb.StateSnapshot({"n": 1})) == 'state: {"n": 1}'
    delta = agentnb.StateDelta(
        [{"op": "replace", "path": "/n", "value": 2}, {"op": "move", "path": "/a", "from": "/b"}]
    )
    assert state_line(delta) == "state: replace /n = 2; move /a from /b"
    assert len(state_line(agentnb.StateSnapshot({"x": "y" * 500}))) == 120
