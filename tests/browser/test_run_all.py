"""Tutorial 02 with Run All in real JupyterLab: its cells that fail on purpose do not stop it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from harness.browser import Browser, Page, fresh_page, open_notebook, wait_for
from harness.jupyter import Jupyter

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

MAGICS = Path(__file__).resolve().parents[2] / "notebooks" / "02_magics.ipynb"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with Jupyter({"AGENTNB_DEMO_SPEED": "0"}) as lab:
        lab.add_notebook("02_magics.ipynb", [], source=MAGICS)
        with fresh_page(browser, lab) as fresh:
            open_notebook(fresh, lab, "02_magics.ipynb")
            yield fresh


def test_run_all_runs_every_cell_of_tutorial_02(page: Page) -> None:
    nb = nbformat.read(MAGICS, as_version=4)  # type: ignore[no-untyped-call]
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    failing = [i for i in code if "raises-exception" in nb.cells[i].metadata.get("tags", [])]
    assert len(failing) == 3  # the cells that show a mistake on purpose are marked
    page.evaluate(
        "() => { window.__ran = window.jupyterapp.commands.execute('notebook:run-all-cells')"
        ".then(() => true); }"
    )
    # Every code cell gets its execution count, the last one too: Run All went past each failure.
    try:
        counts = wait_for(
            page,
            """(code) => {
                const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
                const counts = code.map((i) => cells.get(i).executionCount);
                const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                return counts.every((n) => n !== null) && kernel.status === 'idle' && counts;
            }""",
            code,
            timeout=120,
        )
    except PlaywrightTimeout:  # say where it stopped: which cells ran, the kernel, any dialog
        state = page.evaluate(
            """(code) => {
                const panel = window.jupyterapp.shell.currentWidget;
                const cells = panel.content.model.cells;
                return {
                    counts: code.map((i) => cells.get(i).executionCount),
                    kernel: panel.sessionContext.session?.kernel?.status,
                    connection: panel.sessionContext.session?.kernel?.connectionStatus,
                    dialogs: [...document.querySelectorAll('.jp-Dialog')].map((d) => d.innerText),
                };
            }""",
            code,
        )
        raise AssertionError(f"Run All did not finish within 120 s: {state}") from None
    assert counts == list(range(1, len(code) + 1)), counts
    errors = page.evaluate(
        """(failing) => failing.map((i) => {
            const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
            return cell.node.innerText;
        })""",
        failing,
    )
    for text in errors:  # each failed as it should, and said why
        assert "Error" in text, text
