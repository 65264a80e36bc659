"""The quickstart in a real Notebook 7 and a real browser (issue 3, point 1: the live view
works in JupyterJupyter 4 *and* Notebook 7).

A Notebook 7 server (``jupyter notebook``: 127.0.0.1, a token, everything in a
temporary directory; see harness/jupyter.py) serves a copy of
``notebooks/01_quickstart.ipynb``. Chromium opens it in Notebook 7's own page,
``/notebooks/NAME``, and runs ``%load_ext agentnb`` and the ``%%agent poet`` cell
as a user does: click the cell, press Shift+Enter. A sampler in the page reads
the cell every 100 ms from the DOM alone: the live view's state and visible
text, and how many Markdown outputs the cell has. The text it must end with is
computed here by running the same demo agent with no pauses (as
tests/browser/test_jupyterlab.py does). Then a longer run is stopped with the view's Stop
button, and a page is reloaded mid-run.

Nothing asserts a time. Without Notebook 7 (``pip install 'notebook>=7'``),
Chromium or Playwright these tests fail and say what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from harness.browser import (
    Browser,
    Page,
    fresh_page,
    open_notebook,
    settle,
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

NOTEBOOK = "01_quickstart.ipynb"
SAMPLE_MS = 100

# Reads one cell (by its place in the page) from the DOM only: the live view's
# status attribute, the state its header shows, the visible text of the run's
# own text blocks, and the cell's Markdown outputs (the final transcript).
SAMPLER = """([index, interval]) => {
    const node = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    const read = () => {
        const run = node.querySelector('.agentnb-run');
        const outputs = [...node.querySelectorAll('.jp-OutputArea-child')];
        const view = outputs.findIndex((o) => o.querySelector('.agentnb-run'));
        const markdown = outputs.filter((o) => o.querySelector('.jp-RenderedMarkdown'));
        return {
            status: run ? run.dataset.status : null,
            state: run ? run.querySelector('.agentnb-state').innerText : null,
            text: run ? [...run.querySelectorAll('.agentnb-text:not(.agentnb-child)')]
                .map((b) => b.innerText).join('') : null,
            transcripts: markdown.length,
            below: view >= 0 && markdown.length > 0 && outputs.indexOf(markdown[0]) > view,
        };
    };
    const samples = [read()];
    const timer = setInterval(() => samples.push(read()), interval);
    window.__agentnbSampler = {samples, timer, read};
}"""
# The run's own text blocks of the cell at *index* in the page show *expected*.
SHOWN = """([index, expected]) => {
    const node = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    const blocks = node.querySelectorAll('.agentnb-text:not(.agentnb-child)');
    return [...blocks].map((b) => b.innerText).join('') === expected;
}"""
# The cell has run: its prompt shows an execution count, not [*] (nor [ ]).
CELL_FINISHED = """(index) => {
    const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    return /\\[\\d+\\]/.test(cell.querySelector('.jp-InputPrompt').innerText);
}"""


@dataclass
class Sample:
    status: str | None
    state: str | None
    text: str | None
    transcripts: int  # Markdown outputs in the cell
    below: bool  # the first of them comes after the live view


@pytest.fixture(scope="module")
def server(quickstart: Any) -> Iterator[Jupyter]:
    # Speed 1: the poet streams for about two seconds, as a model would.
    with Jupyter({"AGENTNB_DEMO_SPEED": "1"}, ui="notebook") as notebook:
        notebook.add_notebook(NOTEBOOK, [LONG_RUN, SLOW_POET], source=QUICKSTART)
        yield notebook


@pytest.fixture
def page(server: Jupyter, browser: Browser) -> Iterator[Page]:
    with fresh_page(browser, server) as fresh:
        yield fresh


def open_in_notebook7(page: Page, server: Jupyter) -> None:
    open_notebook(page, server, NOTEBOOK)
    assert page.url.startswith(f"{server.base}/notebooks/{NOTEBOOK}"), page.url
    # Notebook 7's own page, not JupyterJupyter's.
    assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"


def shift_enter(page: Page, *indices: int) -> None:
    """Run the cells at *indices* as a user does: click into each, press Shift+Enter."""
    for index in indices:
        page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")


def trust(page: Page) -> None:
    """Notebook 7's "Not Trusted" button, then Trust (saved outputs from the repository make
    the copy untrusted; an untrusted notebook's widgets do not come back after a reload)."""
    status = page.locator("button.jp-NotebookTrustedStatus")
    assert status.inner_text() == "Not Trusted"
    status.click()
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(".jp-Dialog").wait_for(state="detached")
    wait_for(
        page, "() => document.querySelector('.jp-NotebookTrustedStatus').innerText === 'Trusted'"
    )


def start_sampler(page: Page, index: int) -> None:
    page.evaluate(SAMPLER, [index, SAMPLE_MS])


def samples(page: Page) -> list[Sample]:
    raw = page.evaluate(
        "() => { const s = window.__agentnbSampler; clearInterval(s.timer); return s.samples; }"
    )
    return [Sample(**s) for s in raw]


@dataclass
class Streamed:
    expected: str
    seen: list[Sample]
    transcript: str  # the final Markdown output's innerText


@pytest.fixture(scope="module")
def streamed(server: Jupyter, browser: Browser, quickstart: Any) -> Streamed:
    """Run the quickstart's %%agent cell once in Notebook 7, sampling its cell."""
    index, name, text = agent_cell(quickstart)
    expected = full_text(name, text)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        open_in_notebook7(page, server)
        start_sampler(page, index)
        shift_enter(page, load_cell(quickstart), index)
        page.locator(".jp-Notebook .jp-Cell").nth(index).scroll_into_view_if_needed()
        wait_for(page, SAMPLED_END, ENDED, timeout=60)
        wait_for(page, CELL_FINISHED, index, timeout=30)
        # A few samples after the end (nothing changes any more): an observation of "no change".
        sampled_after(page, ENDED, 5)
        seen = samples(page)
        transcript = (
            page.locator(".jp-Notebook .jp-Cell")
            .nth(index)
            .locator(".jp-OutputArea-output.jp-RenderedMarkdown")
        )
        return Streamed(expected=expected, seen=seen, transcript=transcript.inner_text())
    finally:
        context.close()
        server.shutdown_kernels()


def test_the_live_view_appears_and_grows_while_the_agent_streams(streamed: Streamed) -> None:
    assert any(s.status == "running" for s in streamed.seen), "no running live view was seen"
    for s in streamed.seen:
        # Never anything but a beginning of the agent's text: no loss, no repeat, no reorder.
        assert s.text is None or streamed.expected.startswith(s.text), (s, streamed.expected)
    moments = growth_moments(streamed.seen, streamed.expected)
    assert len(moments) >= 3, (
        f"the text grew at {len(moments)} sampled moments before the end: "
        f"{[s.text for s in streamed.seen]}"
    )


def test_the_live_view_ends_done_with_the_agents_full_text(streamed: Streamed) -> None:
    last = streamed.seen[-1]
    assert last.status == "done"
    assert last.state == "done"  # what the header shows
    assert last.text == streamed.expected  # exact, line breaks and all
    ended = next(i for i, s in enumerate(streamed.seen) if s.status == "done")
    assert all(s.text == streamed.expected for s in streamed.seen[ended:])


def test_the_final_transcript_is_rendered_below_the_live_view(streamed: Streamed) -> None:
    # While the run streams, the cell shows the live view only (the saved
    # outputs of the repository's quickstart are gone) ...
    running = [s for s in streamed.seen if s.status == "running"]
    assert running
    assert all(s.transcripts == 0 for s in running), [s.transcripts for s in running]
    # ... and when it has ended, one rendered Markdown transcript, after the view.
    last = streamed.seen[-1]
    assert last.transcripts == 1
    assert last.below
    # It reads as the live view did: the same words, the poem's line breaks kept.
    assert streamed.transcript.endswith(streamed.expected), (
        f"live view: {streamed.expected!r}\nfinal transcript as shown: {streamed.transcript!r}"
    )


def test_stop_cancels_a_running_cell(page: Page, server: Jupyter, quickstart: Any) -> None:
    index = len(quickstart.cells)  # LONG_RUN, appended to the copy
    expected = full_text("counter", LONG_RUN.partition("\n")[2])
    open_in_notebook7(page, server)
    start_sampler(page, index)
    shift_enter(page, load_cell(quickstart), index)
    view = page.locator(".jp-Notebook .jp-Cell").nth(index)
    # Let it stream a little first: three different texts seen.
    wait_for(page, STREAMED_A_LITTLE, timeout=60)
    view.locator(".agentnb-stop").click()
    view.locator('.agentnb-run[data-status="cancelled"]').wait_for(timeout=20_000)
    assert view.locator(".agentnb-state").inner_text() == "cancelled"
    # The cell ends (the kernel is free again) with a transcript that says so.
    wait_for(page, CELL_FINISHED, index, timeout=20)
    transcript = view.locator(".jp-OutputArea-output.jp-RenderedMarkdown")
    assert "cancelled" in transcript.inner_text()
    sampled_after(page, ["cancelled"], 10)  # 10 samples after the stop: "no change"
    seen = samples(page)
    _, final = stopped_text(seen, expected)
    assert len(final) < len(expected.rstrip()), "the run was not stopped before its end"
    assert seen[-1].transcripts == 1
    assert seen[-1].below


def test_a_page_reloaded_mid_run_shows_the_full_text_once_the_run_ends(
    page: Page, server: Jupyter, quickstart: Any
) -> None:
    index = len(quickstart.cells) + 1  # SLOW_POET, appended to the copy
    expected = full_text("poet", "the sea")
    open_in_notebook7(page, server)
    trust(page)
    start_sampler(page, index)
    shift_enter(page, load_cell(quickstart), index)
    wait_for(
        page,
        "() => { const s = window.__agentnbSampler.read();"
        " return s.status === 'running' && s.text; }",
        timeout=60,
    )
    # Save with Ctrl+S, as a user does (the notebook has unsaved outputs until then).
    dirty = "() => window.jupyterapp.shell.currentWidget.context.model.dirty"
    assert page.evaluate(dirty)
    page.keyboard.press("Control+s")
    wait_for(page, f"() => !({dirty})()")
    before = Sample(**page.evaluate("() => window.__agentnbSampler.read()"))
    assert before.status == "running"
    assert before.text
    assert expected.startswith(before.text)
    assert before.text != expected
    page.reload()
    # The same notebook, on the same (still busy) kernel: the view comes back
    # from the saved output, then asks the kernel for everything it lacks.
    wait_notebook(page)
    view = page.locator(".jp-Notebook .jp-Cell").nth(index)
    # The page opens at the top; an offscreen cell is not rendered (Notebook 7's
    # cells have content-visibility: auto), and its innerText is empty.
    view.scroll_into_view_if_needed()
    view.locator('.agentnb-run[data-status="done"]').wait_for(state="attached", timeout=60_000)
    # The text shows once the view has rendered what it got (the assertion says what differs).
    settle(page, SHOWN, [index, expected], timeout=10)
    blocks = view.locator(".agentnb-text:not(.agentnb-child)")
    assert "".join(blocks.all_inner_texts()) == expected
