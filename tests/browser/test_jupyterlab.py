"""The quickstart in a real JupyterLab and a real browser (issue 3, point 9).

A JupyterLab server (127.0.0.1, a token, everything in a temporary directory;
see harness/jupyter.py) serves a copy of ``notebooks/01_quickstart.ipynb``; Chromium
opens it and runs its ``%%agent`` cell while a sampler in the page reads the
live view's visible text every 100 ms. The demo agents are deterministic, so
the text the view must end with is computed here by running the same agent on
the same input with no pauses. Then a longer run is stopped with the view's
Stop button, and a page is reloaded mid-run.

Nothing asserts a time. Needs Debian's ``chromium`` and ``jupyterlab`` +
``playwright`` (the ``test`` extra): without them these tests fail and say what
to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness.browser import (
    Browser,
    Page,
    cell,
    fresh_page,
    open_notebook,
    run_cells,
    settle,
    trust_notebook,
    wait_for,
    wait_notebook,
)
from harness.jupyter import Jupyter
from tests.browser.pages import (
    ENDED,
    LONG_RUN,
    QUICKSTART,
    SAMPLED_END,
    SLOW_POET,
    STREAMED_A_LITTLE,
    agent_cell,
    growth_moments,
    load_cell,
    sampled_after,
    stopped_text,
)
from tests.helpers import full_text

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

SAMPLE_MS = 100

# Samples the run view of one cell: its state and the visible text of the
# run's own text blocks (innerText: what the page shows, line breaks included).
SAMPLER = """([index, interval]) => {
    const node = window.jupyterapp.shell.currentWidget.content.widgets[index].node;
    const read = () => {
        const run = node.querySelector('.agentnb-run');
        if (!run) return {t: performance.now(), status: null, state: null, text: null};
        const blocks = run.querySelectorAll('.agentnb-text:not(.agentnb-child)');
        return {
            t: performance.now(),
            status: run.dataset.status,
            state: run.querySelector('.agentnb-state').textContent,
            text: [...blocks].map((b) => b.innerText).join(''),
        };
    };
    const samples = [read()];
    const timer = setInterval(() => samples.push(read()), interval);
    window.__agentnbSampler = {samples, timer, read};
}"""
# The run's own text blocks of cell *index* show *expected*.
SHOWN = """([index, expected]) => {
    const node = window.jupyterapp.shell.currentWidget.content.widgets[index].node;
    const blocks = node.querySelectorAll('.agentnb-text:not(.agentnb-child)');
    return [...blocks].map((b) => b.innerText).join('') === expected;
}"""


@dataclass
class Sample:
    t: float
    status: str | None
    state: str | None
    text: str | None


def start_sampler(page: Page, index: int) -> None:
    page.evaluate(SAMPLER, [index, SAMPLE_MS])


def samples(page: Page, *, stop: bool = True) -> list[Sample]:
    raw = page.evaluate(
        "(stop) => { const s = window.__agentnbSampler; if (stop) clearInterval(s.timer);"
        " return s.samples; }",
        stop,
    )
    return [Sample(**s) for s in raw]


@pytest.fixture(scope="module")
def lab(quickstart: Any) -> Iterator[Jupyter]:
    # Speed 1: the poet streams for about two seconds, as a model would.
    with Jupyter({"AGENTNB_DEMO_SPEED": "1"}) as server:
        server.add_notebook("01_quickstart.ipynb", [LONG_RUN, SLOW_POET], source=QUICKSTART)
        yield server


@pytest.fixture
def page(lab: Jupyter, browser: Browser) -> Iterator[Page]:
    with fresh_page(browser, lab) as fresh:
        yield fresh


@dataclass
class Streamed:
    expected: str
    seen: list[Sample]
    markdown_visible: str  # the final transcript output's innerText


@pytest.fixture(scope="module")
def streamed(lab: Jupyter, browser: Browser, quickstart: Any) -> Streamed:
    """Run the quickstart's %%agent cell once, sampling its live view."""
    index, name, text = agent_cell(quickstart)
    expected = full_text(name, text)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        open_notebook(page, lab, "01_quickstart.ipynb")
        cell(page, index)
        start_sampler(page, index)
        run_cells(page, load_cell(quickstart), index)
        wait_for(page, SAMPLED_END, ENDED, timeout=60)
        # The final transcript is the cell's Markdown output after the view.
        output = cell(page, index).locator(".jp-OutputArea-output.jp-RenderedMarkdown").last
        output.wait_for(timeout=30_000)
        # A few samples after the end (the text stays): an observation of "no change".
        sampled_after(page, ENDED, 5)
        seen = samples(page)
        return Streamed(
            expected=expected,
            seen=seen,
            markdown_visible=output.inner_text(),
        )
    finally:
        context.close()
        lab.shutdown_kernels()


def test_the_live_view_grows_while_the_agent_streams(streamed: Streamed) -> None:
    texts = [s.text for s in streamed.seen if s.text]
    assert texts, "the live view never showed any text"
    for s in streamed.seen:
        # Never anything but a beginning of the agent's text: no loss, no repeat, no reorder.
        assert s.text is None or streamed.expected.startswith(s.text), (s, streamed.expected)
    moments = growth_moments(streamed.seen, streamed.expected)
    assert len(moments) >= 3, (
        f"the text grew at {len(moments)} sampled moments before the end: "
        f"{[s.text for s in streamed.seen]}"
    )


def test_the_live_view_ends_with_the_agents_full_text(streamed: Streamed) -> None:
    last = streamed.seen[-1]
    assert last.status == "done"
    assert last.state == "done"
    assert last.text == streamed.expected  # exact, line breaks and all
    ended = next(i for i, s in enumerate(streamed.seen) if s.status == "done")
    assert all(s.text == streamed.expected for s in streamed.seen[ended:])


def test_the_final_transcript_shows_the_agents_text_as_the_live_view_does(
    streamed: Streamed,
) -> None:
    # Every word of the text is shown ...
    assert " ".join(streamed.markdown_visible.split()).endswith(" ".join(streamed.expected.split()))
    # ... and it reads as it did live: the poem's line breaks are shown, not
    # folded into one paragraph (Markdown's soft breaks).
    assert streamed.markdown_visible.endswith(streamed.expected), (
        f"live view: {streamed.expected!r}\nfinal transcript as shown: "
        f"{streamed.markdown_visible!r}"
    )


def test_stop_cancels_a_running_cell_and_the_text_stops(
    page: Page, lab: Jupyter, quickstart: Any
) -> None:
    index = len(quickstart.cells)  # LONG_RUN, appended to the copy
    expected = full_text("counter", LONG_RUN.partition("\n")[2])
    open_notebook(page, lab, "01_quickstart.ipynb")
    view = cell(page, index)
    start_sampler(page, index)
    run_cells(page, load_cell(quickstart), index)
    # Let it stream a little first: three different texts seen.
    wait_for(page, STREAMED_A_LITTLE, timeout=60)
    view.locator(".agentnb-stop").click()
    view.locator('.agentnb-run[data-status="cancelled"]').wait_for(timeout=20_000)
    assert view.locator(".agentnb-state").inner_text() == "cancelled"
    # The cell ends (the kernel is free again) with a transcript that says so.
    transcript = view.locator(".jp-OutputArea-output.jp-RenderedMarkdown").last
    transcript.wait_for(timeout=20_000)
    assert "cancelled" in transcript.inner_text()
    page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=20_000)
    sampled_after(page, ["cancelled"], 15)  # 15 samples after the stop: "no change"
    seen = samples(page)
    stopped, final = stopped_text(seen, expected)
    assert len(final) < len(expected.rstrip()), "the run was not stopped before its end"
    assert len(growth_moments(seen[:stopped], expected)) >= 2


def test_a_page_reloaded_mid_run_shows_the_full_text_once_the_run_ends(
    page: Page, lab: Jupyter, quickstart: Any
) -> None:
    index = len(quickstart.cells) + 1  # SLOW_POET, appended to the copy
    expected = full_text("poet", "the sea")
    open_notebook(page, lab, "01_quickstart.ipynb")
    # Saved outputs from the repository make the copy untrusted; JupyterLab then
    # saves it unsigned and, after the reload, shows no widget at all.
    trust_notebook(page)
    view = cell(page, index)
    start_sampler(page, index)
    run_cells(page, load_cell(quickstart), index)
    wait_for(
        page,
        "() => { const s = window.__agentnbSampler.read();"
        " return s.status === 'running' && s.text; }",
        timeout=60,
    )
    page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
    before = Sample(**page.evaluate("() => window.__agentnbSampler.read()"))
    assert before.status == "running"
    assert before.text
    assert expected.startswith(before.text)
    assert before.text != expected
    page.reload()
    # The same notebook, on the same (still busy) kernel: the view comes back
    # from the saved output, then asks the kernel for everything it lacks.
    wait_notebook(page)
    view = cell(page, index)
    view.locator('.agentnb-run[data-status="done"]').wait_for(state="attached", timeout=60_000)
    # The text shows once the view has rendered what it got (the assertion says what differs).
    settle(page, SHOWN, [index, expected], timeout=10)
    blocks = cell(page, index).locator(".agentnb-text:not(.agentnb-child)")
    assert "".join(blocks.all_inner_texts()) == expected


def test_a_finished_run_folds_to_its_status_line_one_click_from_the_whole_view(
    page: Page, lab: Jupyter, quickstart: Any
) -> None:
    index, _, _ = agent_cell(quickstart)
    open_notebook(page, lab, "01_quickstart.ipynb")
    view = cell(page, index)
    run_cells(page, load_cell(quickstart), index)
    view.locator('.agentnb-run[data-status="done"]').wait_for(timeout=60_000)
    body, toggle = view.locator(".agentnb-body"), view.locator(".agentnb-toggle")
    assert body.is_hidden()  # the run is read once: in the transcript below
    assert toggle.inner_text() == "show run"
    assert view.locator(".agentnb-state").inner_text() == "done"
    note = view.locator(".agentnb-note").inner_text()
    assert "1 tool call" in note
    assert " words" in note
    assert view.locator(".jp-OutputArea-output.jp-RenderedMarkdown").count() == 1
    toggle.click()
    assert body.is_visible()
    assert toggle.inner_text() == "hide run"
    toggle.click()
    assert body.is_hidden()


def test_a_kernel_restart_ends_a_running_view_and_hides_stop(
    page: Page, lab: Jupyter, quickstart: Any
) -> None:
    index = len(quickstart.cells)  # LONG_RUN, appended to the copy
    open_notebook(page, lab, "01_quickstart.ipynb")
    view = cell(page, index)
    start_sampler(page, index)
    run_cells(page, load_cell(quickstart), index)
    wait_for(page, STREAMED_A_LITTLE, timeout=60)
    assert view.locator(".agentnb-stop").is_visible()
    page.evaluate(
        "() => { window.__restartedAt = performance.now();"
        " window.__restart = window.jupyterapp.shell.currentWidget.sessionContext.session"
        ".kernel.restart(); }"
    )
    view.locator('.agentnb-run[data-status="lost"]').wait_for(timeout=20_000)
    took = page.evaluate("() => performance.now() - window.__restartedAt")
    print(f"the view said the run was over {took / 1000:.2f} s after the restart")
    assert view.locator(".agentnb-state").inner_text() == "ended"
    assert "kernel is gone" in view.locator(".agentnb-note").inner_text()
    assert view.locator(".agentnb-stop").is_hidden()
    samples(page)  # stop the sampler
    page.evaluate("async () => { await window.__restart; }")  # the new kernel is up
