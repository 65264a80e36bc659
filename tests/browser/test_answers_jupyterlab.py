"""The agent's questions in a real JupyterLab: answered in the live view, kept in the transcript.

A cell whose agent asks shows the question in its view: a button per choice, or
a text box for free text. A click (or Enter in the box) answers it; the view
then shows what was answered, by whom, and the cell's transcript shows the
question and the answer. An answer the run refuses is shown by the question,
its controls kept; a page drawn again shows a still-open question with live
controls. One JupyterLab server for the module; each case a fresh page.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.browser import Browser, Page, cell, fresh_page, open_notebook, run_cells, wait_notebook
from harness.jupyter import Jupyter

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

SETUP = """%load_ext agentnb
import asyncio
import agentnb

async def deploy(target):
    answer = await agentnb.ask(f"Deploy {target.strip()}?", choices=["yes", "no"], default="no")
    agentnb.emit(f"deploying: {answer}")
    return answer

async def name_it(thing):
    name = await agentnb.ask(f"Name for {thing.strip()}?")
    agentnb.emit(f"named {name}")
    return name

async def impatient(thing):     # its sub-run's question closes unanswered; then it asks
    try:
        await asyncio.wait_for(agentnb.run(deploy, thing, name="child"), 0.3)
    except TimeoutError:
        pass
    return await name_it(thing)
"""
CELLS = [
    SETUP,
    "%%agent deploy\nprod",
    "%%agent name_it\nthe cat",
    "%%agent impatient\nthe dog",
    "%%agent -b deploy\nafter the reload",
]


@pytest.fixture(scope="module")
def lab() -> Iterator[Jupyter]:
    with Jupyter() as server:
        server.add_notebook("answers.ipynb", CELLS)
        yield server


@pytest.fixture
def page(lab: Jupyter, browser: Browser) -> Iterator[Page]:
    with fresh_page(browser, lab) as fresh:
        open_notebook(fresh, lab, "answers.ipynb")
        yield fresh


def transcript(page: Page, index: int) -> list[str]:
    """The lines the cell's final transcript shows (its paragraphs, each line once)."""
    output = cell(page, index).locator(".jp-OutputArea-output.jp-RenderedMarkdown").last
    output.wait_for(timeout=30_000)
    return [line for line in output.inner_text().splitlines() if line.strip()]


def test_a_click_on_a_choice_answers_the_question(page: Page) -> None:
    run_cells(page, 0, 1)
    view = cell(page, 1)
    question = view.locator(".agentnb-ask")
    question.locator(".agentnb-choice").first.wait_for(timeout=30_000)
    assert question.locator(".agentnb-ask-prompt").inner_text() == "? Deploy prod?"
    assert question.locator(".agentnb-choice").all_inner_texts() == ["yes", "no"]
    assert question.locator(".agentnb-ask-note").inner_text() == "default: no"
    assert view.locator(".agentnb-state").inner_text() == "running"
    assert "waiting for an answer" in view.locator(".agentnb-note").inner_text()
    question.get_by_role("button", name="yes").click()
    assert transcript(page, 1) == [
        "? Deploy prod? [yes/no] (default: no)",
        "= yes (by cell)",
        "deploying: yes",
    ]
    view.locator(".agentnb-toggle").click()  # unfold the finished run
    assert question.locator(".agentnb-ask-answer").inner_text() == "= yes (by cell)"
    assert question.locator(".agentnb-choice").count() == 0


def test_enter_in_the_text_box_answers_a_free_text_question(page: Page) -> None:
    run_cells(page, 0, 2)
    view = cell(page, 2)
    box = view.locator(".agentnb-ask-input")
    box.wait_for(timeout=30_000)
    assert view.locator(".agentnb-ask-prompt").inner_text() == "? Name for the cat?"
    assert view.locator(".agentnb-ask-note").count() == 0  # no default
    box.fill("Tom <b>& $x$")
    box.press("Enter")
    assert transcript(page, 2) == [
        "? Name for the cat?",
        "= Tom <b>& $x$ (by cell)",
        "named Tom <b>& $x$",
    ]
    view.locator(".agentnb-toggle").click()
    assert view.locator(".agentnb-ask-answer").inner_text() == "= Tom <b>& $x$ (by cell)"


def test_a_refused_answer_is_shown_by_the_question_and_its_controls_kept(page: Page) -> None:
    run_cells(page, 0, 3)
    view = cell(page, 3)
    view.locator(".agentnb-ask-input").wait_for(timeout=30_000)  # the second question
    child = view.locator(".agentnb-ask.agentnb-child")
    assert child.locator(".agentnb-ask-prompt").inner_text() == "? Deploy the dog?"
    child.get_by_role("button", name="yes").click()  # its sub-run has ended
    refusal = child.locator(".agentnb-ask-refused")
    refusal.wait_for(timeout=20_000)
    assert "has ended" in refusal.inner_text()
    assert child.locator(".agentnb-choice").count() == 2
    assert child.locator(".agentnb-choice:disabled").count() == 0
    view.locator(".agentnb-ask-input").fill("Rex")
    view.locator(".agentnb-ask-input").press("Enter")
    assert transcript(page, 3)[-3:] == ["? Name for the dog?", "= Rex (by cell)", "named Rex"]
    view.locator(".agentnb-toggle").click()
    assert child.locator(".agentnb-ask-answer").inner_text() == "no answer: the run ended"


def test_a_page_drawn_again_shows_the_open_question_with_live_controls(
    page: Page, lab: Jupyter
) -> None:
    run_cells(page, 0, 4)
    view = cell(page, 4)
    view.locator(".agentnb-choice").first.wait_for(timeout=30_000)
    page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
    page.reload()
    wait_notebook(page)
    view = cell(page, 4)
    yes = view.get_by_role("button", name="yes")
    yes.wait_for(timeout=30_000)
    assert yes.is_enabled()
    assert view.locator(".agentnb-ask-prompt").inner_text() == "? Deploy after the reload?"
    yes.click()
    # The answer reaches the view drawn again (the transcript goes to the cell's first
    # request, which this page did not send: it shows after the next save and reopen).
    answered = view.locator(".agentnb-ask-answer")
    answered.wait_for(state="attached", timeout=20_000)
    assert answered.text_content() == "= yes (by cell)"
    view.locator('.agentnb-run[data-status="done"]').wait_for(state="attached", timeout=20_000)
