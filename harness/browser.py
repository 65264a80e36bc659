"""Debian's Chromium driven by Playwright, and a notebook in JupyterLab's (or Notebook 7's) page.

::

    with Jupyter({"AGENTNB_DEMO_SPEED": "1"}) as lab, chromium() as browser:
        lab.add_notebook("demo.ipynb", ["%load_ext agentnb", "%%agent poet\\nthe sea"])
        with fresh_page(browser, lab) as page:
            open_notebook(page, lab, "demo.ipynb")
            run_cells(page, 0, 1)
            wait_cells(page)

The browser is Debian's Chromium (``apt-get install chromium``, or
``AGENTNB_CHROMIUM``) driven by Playwright (``pip install playwright``;
``playwright install`` is not used). Missing either is an error that says what
to install. Every wait here is on a state the page shows, with a deadline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

try:
    from playwright.sync_api import Browser, Locator, Page, Playwright, sync_playwright
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError(
        "the browser tests need Playwright: pip install playwright (it drives Debian's "
        "chromium: apt-get install chromium; `playwright install` is not needed)"
    ) from None

from harness.jupyter import Jupyter

__all__ = [
    "CHROMIUM",
    "Browser",
    "Page",
    "cell",
    "chromium",
    "fresh_page",
    "images_settled",
    "launch",
    "missing",
    "open_notebook",
    "run_cells",
    "settle",
    "sync_playwright",
    "trust_notebook",
    "wait_cells",
    "wait_for",
    "wait_notebook",
]

CHROMIUM = os.environ.get("AGENTNB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def missing() -> str | None:
    """What to install for the browser tests, in one line; None when Chromium is there."""
    if os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK):
        return None
    return (
        f"the browser tests need Chromium at {CHROMIUM}: apt-get install chromium (Debian's "
        "package; bash .ci/run installs it), or set AGENTNB_CHROMIUM to a Chromium binary"
    )


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless."""
    problem = missing()
    if problem is not None:
        raise RuntimeError(problem)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, launched for the block (a module's tests, say)."""
    with sync_playwright() as p:
        browser = launch(p)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_page(browser: Browser, server: Jupyter) -> Iterator[Page]:
    """A page in a context of its own; the server's kernels are shut down after it."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()
        server.shutdown_kernels()


# -- waiting on the page -------------------------------------------------------------


def wait_for(page: Page, script: str, arg: Any = None, timeout: float = 30) -> Any:
    """Wait until the JavaScript function *script* returns something truthy; return it."""
    handle = page.wait_for_function(script, arg=arg, timeout=timeout * 1000, polling=50)
    return handle.json_value()


def settle(page: Page, script: str, arg: Any = None, timeout: float = 30) -> bool:
    """As :func:`wait_for`, but False at the deadline: the caller's assertion says what differs."""
    try:
        wait_for(page, script, arg, timeout)
    except PlaywrightTimeout:
        return False
    return True


def images_settled(page: Page) -> None:
    """Wait until every image in the page has loaded or failed, and its load or error
    event has been dispatched (so an ``<img onerror>`` has run, if there is one)."""
    page.evaluate(
        """async () => {
            await Promise.all([...document.images].map((img) => img.decode().catch(() => {})));
            await new Promise((resolve) => setTimeout(resolve, 0));
        }"""
    )


# -- a notebook in JupyterLab or Notebook 7 ---------------------------------------------


def open_notebook(page: Page, server: Jupyter, name: str, timeout: float = 60) -> None:
    """Open *name* and wait until all its cells are there and its kernel is idle."""
    page.goto(server.notebook_url(name))
    wait_notebook(page, timeout)
    # The toolbar can say idle before the kernel's connection is up: ask the session.
    wait_for(
        page,
        """() => {
            const session = window.jupyterapp.shell.currentWidget.sessionContext;
            const kernel = session.isReady && session.session && session.session.kernel;
            return kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
        }""",
        timeout=timeout,
    )


def wait_notebook(page: Page, timeout: float = 60) -> None:
    """Wait until the current notebook is loaded with all its cells in the page."""
    # The notebook attaches its cells a few at a time: wait for all of them.
    wait_for(
        page,
        """() => {
            const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            if (!panel || !panel.context || !panel.context.isReady) return false;
            if (!panel.content.model) return false;
            const cells = panel.content.model.cells.length;
            return cells > 0 && panel.node.querySelectorAll('.jp-Cell').length === cells;
        }""",
        timeout=timeout,
    )


def trust_notebook(page: Page) -> None:
    """File > Trust Notebook, as a user would (an untrusted notebook's widgets do not come
    back after a reload: JupyterLab shows their text/plain instead)."""
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:trust'); }")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(".jp-Dialog").wait_for(state="detached")


def run_cells(page: Page, *indices: int) -> None:
    """Run the cells at *indices* (notebook order, markdown cells count), queued at once.

    Through JupyterLab's command registry, as the Run menu does. The promises
    are not awaited here (they resolve when the cells have finished): see
    :func:`wait_cells`.
    """
    page.evaluate(
        """(indices) => {
            const app = window.jupyterapp;
            const notebook = app.shell.currentWidget.content;
            const runs = indices.map((i) => {
                notebook.activeCellIndex = i;
                return app.commands.execute('notebook:run-cell');
            });
            window.__agentnbCellsDone = false;
            Promise.all(runs).then(() => { window.__agentnbCellsDone = true; });
        }""",
        list(indices),
    )


def wait_cells(page: Page, timeout: float = 60) -> None:
    """Wait until the cells last started by :func:`run_cells` have finished."""
    wait_for(page, "() => window.__agentnbCellsDone", timeout=timeout)


def cell(page: Page, index: int) -> Locator:
    """The cell at *index*, scrolled into view (offscreen cells may skip rendering)."""
    page.evaluate(
        "(i) => window.jupyterapp.shell.currentWidget.content.scrollToItem(i, 'start')", index
    )
    return page.locator(".jp-Notebook .jp-Cell").nth(index)
