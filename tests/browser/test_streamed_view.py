"""The streamed kinds in a real JupyterLab: thinking folded, tool arguments growing, usage
and cost in the status line, steps grouped.

A kernel runs :func:`tests.browser.streaming.thinker` (reasoning, a tool call whose
arguments stream in five fragments with pauses, two usage events, three steps)
while a sampler in the page reads the live view every 50 ms.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agentnb import ToolCall
from agentnb._format import call_line, usage_line
from harness.browser import Browser, cell, open_notebook, run_cells, wait_for
from harness.jupyter import Jupyter
from tests.browser.pages import SAMPLED_END
from tests.browser.streaming import ANSWER, ARGS, REASONING, USAGES

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

CELLS = ["%load_ext agentnb\nfrom tests.browser.streaming import thinker", "%%agent thinker\n0.3"]
INDEX = 1
SAMPLER = """([index, interval]) => {
    const node = window.jupyterapp.shell.currentWidget.content.widgets[index].node;
    const read = () => {
        const run = node.querySelector('.agentnb-run');
        if (!run) return {status: null};
        const thinking = run.querySelector('.agentnb-reasoning details');
        const summary = thinking && thinking.querySelector('summary');
        const args = run.querySelector('.agentnb-call .agentnb-args');
        return {
            status: run.dataset.status,
            note: run.querySelector('.agentnb-note').textContent,
            thinking: thinking && {
                open: thinking.open,
                summary: summary.textContent,
                height: summary.getBoundingClientRect().height,
                font: parseFloat(getComputedStyle(summary).fontSize),
            },
            args: args && args.textContent,
            tools: [...run.querySelectorAll('.agentnb-tool summary')].map((s) => s.textContent),
        };
    };
    const samples = [read()];
    const timer = setInterval(() => samples.push(read()), interval);
    window.__agentnbSampler = {samples, timer, read};
}"""


def first_usage() -> str:
    u = USAGES[0]
    return usage_line(
        {
            "calls": 1,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "cached_tokens": u.cached_tokens,
            "cost": u.cost,
        }
    )


def all_usage() -> str:
    a, b = USAGES
    return usage_line(
        {
            "calls": 2,
            "input_tokens": a.input_tokens + b.input_tokens,
            "output_tokens": a.output_tokens + b.output_tokens,
            "reasoning_tokens": a.reasoning_tokens,
            "cached_tokens": a.cached_tokens,
            "cost": (a.cost or 0.0) + (b.cost or 0.0),
        }
    )


@pytest.fixture(scope="module")
def watched(browser: Browser) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    with Jupyter() as lab:
        lab.add_notebook("streamed.ipynb", CELLS)
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        try:
            page = context.new_page()
            open_notebook(page, lab, "streamed.ipynb")
            cell(page, INDEX)
            page.evaluate(SAMPLER, [INDEX, 50])
            run_cells(page, 0, INDEX)
            wait_for(page, SAMPLED_END, ["done", "error", "cancelled"], timeout=60)
            seen: list[dict[str, Any]] = page.evaluate(
                "() => { const s = window.__agentnbSampler; clearInterval(s.timer);"
                " return s.samples; }"
            )
            yield page, seen
        finally:
            context.close()
            lab.shutdown_kernels()


def test_the_tool_arguments_grow_as_they_stream_then_the_call_takes_their_place(
    watched: tuple[Any, list[dict[str, Any]]],
) -> None:
    _, seen = watched
    whole = "".join(ARGS)
    shown = [s["args"] for s in seen if s.get("args") is not None]
    assert all(whole.startswith(a) for a in shown), shown
    distinct = list(dict.fromkeys(a for a in shown if a))
    assert len(distinct) >= 3, f"the arguments were seen at {distinct}"
    assert distinct == sorted(distinct, key=len)  # only ever growing
    call = call_line(ToolCall("weather", json.loads(whole)), 40)
    after = [s for s in seen if s.get("tools")]
    assert after, "the tool call never showed"
    assert all(s["args"] is None for s in after if call in s["tools"])  # replaced, not added
    assert seen[-1]["tools"] == [call, '← weather: {"temp": 18}']


def test_the_thinking_block_stays_folded_to_one_line(
    watched: tuple[Any, list[dict[str, Any]]],
) -> None:
    _, seen = watched
    thinking = [s["thinking"] for s in seen if s.get("thinking")]
    assert thinking, "no thinking block"
    assert not any(t["open"] for t in thinking)
    assert all(t["height"] < 2 * t["font"] for t in thinking if t["height"]), thinking
    summaries = list(dict.fromkeys(t["summary"] for t in thinking))
    assert summaries[-1] == "thinking: I should call the tool."
    assert len(summaries) >= 2  # it followed the reasoning as it came


def test_usage_and_cost_are_in_the_status_line_live_then_the_runs_totals(
    watched: tuple[Any, list[dict[str, Any]]],
) -> None:
    _, seen = watched
    live = [s["note"] for s in seen if s.get("status") == "running"]
    assert any(first_usage() in note for note in live), live
    assert seen[-1]["status"] == "done"
    assert seen[-1]["note"].endswith(" · " + all_usage())
    assert all_usage() == (
        "2 model calls · 2,700 tokens in (200 cached) · 105 out (30 reasoning) · $0.0093"
    )


def test_steps_group_their_items_and_thinking_unfolds_on_click(
    watched: tuple[Any, list[dict[str, Any]]],
) -> None:
    page, _ = watched
    view = cell(page, INDEX)
    view.locator(".agentnb-toggle").click()  # the finished run is folded: show it
    steps = view.locator(".agentnb-step")
    assert steps.locator(".agentnb-step-name").all_inner_texts() == [
        "▸ think",
        "▸ act",
        "▸ answer",
    ]
    assert steps.nth(0).locator(".agentnb-reasoning").count() == 1
    assert steps.nth(1).locator(".agentnb-tool summary").count() == 2
    assert steps.nth(2).locator(".agentnb-text").inner_text() == "".join(ANSWER)
    body = steps.nth(2).locator(".agentnb-step-body")
    assert body.evaluate("(e) => e.getBoundingClientRect().left") > steps.nth(2).evaluate(
        "(e) => e.getBoundingClientRect().left"
    )  # indented under its name
    summary = view.locator(".agentnb-reasoning summary")
    content = view.locator(".agentnb-reasoning details > div")
    assert content.is_hidden()
    summary.click()
    assert content.is_visible()
    assert content.evaluate("(e) => e.textContent") == "".join(REASONING)
