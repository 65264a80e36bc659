"""A real JupyterLab or Notebook 7 in a real browser: the browser tests, the latency benchmark.

::

    with Lab({"AGENTNB_DEMO_SPEED": "1"}) as lab, sync_playwright() as p:
        cells = ["%load_ext agentnb\\nimport agentnb.demo", "%%agent poet\\nthe sea"]
        lab.add_notebook("demo.ipynb", cells)
        browser = launch(p)
        page = browser.new_page()
        open_notebook(page, lab, "demo.ipynb")
        run_cells(page, 0, 1)

The server runs the interpreter that runs this file (``python -m jupyterlab``)
on 127.0.0.1, a free port and a random token, with its root, configuration,
data, runtime, settings, workspaces and IPython directories all in a temporary
directory: nothing of the machine's own Jupyter set-up leaks in, and nothing is
written outside it. Its kernels inherit the environment given to :class:`Lab`
(``AGENTNB_DEMO_SPEED``, say) and import agentnb from this checkout.

``Lab(env, ui="notebook")`` runs Notebook 7 (``python -m notebook``) instead:
notebooks open in its own page, ``/notebooks/NAME``, and everything else here
works the same (both expose their app as ``window.jupyterapp``, whose shell's
current widget is the notebook's panel).

The browser is Debian's Chromium (``apt-get install chromium``) driven by
Playwright (``pip install playwright``; ``playwright install`` is not used).
Missing either, JupyterLab, or Notebook 7 for ``ui="notebook"``, is an error
that says what to install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import nbformat

try:
    from playwright.sync_api import Browser, Locator, Page, Playwright, sync_playwright
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError(
        "the browser tests need Playwright: pip install playwright (it drives Debian's "
        "chromium: apt-get install chromium; `playwright install` is not needed)"
    ) from None

__all__ = [
    "CHROMIUM",
    "Browser",
    "Lab",
    "Page",
    "cell",
    "chromium",
    "fresh_page",
    "growth_moments",
    "launch",
    "open_notebook",
    "require_browser_stack",
    "run_cells",
    "sync_playwright",
    "trust_notebook",
    "wait_cells",
    "wait_for",
    "wait_notebook",
]

ROOT = Path(__file__).resolve().parent.parent
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
UI = Literal["lab", "notebook"]
# Per front end: its name, the module that starts it, the option that sets
# window.jupyterapp in the page.
_FRONTS: dict[str, tuple[str, str, str]] = {
    "lab": ("JupyterLab", "jupyterlab", "--LabApp.expose_app_in_browser=True"),
    "notebook": ("Notebook 7", "notebook", "--JupyterNotebookApp.expose_app_in_browser=True"),
}
# JupyterLab user settings written into the temporary settings directory: no
# news or update checks (network, and a pop-up over the notebook).
_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def require_browser_stack(ui: UI = "lab") -> None:
    """Raise with what to install if Chromium or JupyterLab (or Notebook 7) is missing."""
    problems = []
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        problems.append(
            f"no Chromium at {CHROMIUM}: apt-get install chromium (Debian's package; "
            "or set AGENTNB_CHROMIUM to a Chromium binary)"
        )
    for module, package in (("jupyterlab", "jupyterlab"), ("ipykernel", "ipykernel")):
        if importlib.util.find_spec(module) is None:
            problems.append(f"{module} is not installed in {sys.executable}: pip install {package}")
    if ui == "notebook":
        try:
            version = importlib.metadata.version("notebook")
        except importlib.metadata.PackageNotFoundError:
            version = None
        if version is None or int(version.split(".")[0]) < 7:
            found = f"notebook {version}" if version else "no notebook package"
            problems.append(
                f"{found} in {sys.executable}, Notebook 7 is needed: pip install 'notebook>=7'"
            )
    if problems:
        raise RuntimeError("the browser tests cannot run: " + "; ".join(problems))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Lab:
    """A JupyterLab (or Notebook 7) server in a temporary directory; see the module docstring."""

    def __init__(
        self, env: dict[str, str] | None = None, *, ui: UI = "lab", timeout: float = 60
    ) -> None:
        require_browser_stack(ui)
        self.ui = ui
        self.name, module, expose = _FRONTS[ui]
        self._tmp = tempfile.TemporaryDirectory(prefix="agentnb-lab-", ignore_cleanup_errors=True)
        base = Path(self._tmp.name)
        self.root = base / "root"
        self.root.mkdir()
        dirs = {
            "JUPYTER_CONFIG_DIR": base / "config",
            "JUPYTER_DATA_DIR": base / "data",
            "JUPYTER_RUNTIME_DIR": base / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": base / "settings",
            "JUPYTERLAB_WORKSPACES_DIR": base / "workspaces",
            "IPYTHONDIR": base / "ipython",
        }
        for path in dirs.values():
            path.mkdir()
        for name, values in _SETTINGS.items():
            target = dirs["JUPYTERLAB_SETTINGS_DIR"] / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        full_env = {**os.environ, **{k: str(v) for k, v in dirs.items()}, **(env or {})}
        full_env.pop("PYTEST_CURRENT_TEST", None)
        full_env.pop("JUPYTER_PATH", None)
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), full_env.get("PYTHONPATH")) if p
        )
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "lab.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "--no-browser",
                f"--ServerApp.token={self.token}",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.root_dir={self.root}",
                "--allow-root",
                expose,
            ],
            env=full_env,
            cwd=self.root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.api("GET", "/api/status")
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
                continue
            return
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        """The end of the server's log (kernel tracebacks land here too)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(
            f"{self.base}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """End every session (and its kernel): each test starts from a fresh kernel."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    def notebook_url(self, name: str) -> str:
        """*name* opened in a fresh workspace (the default one reopens earlier notebooks);
        in Notebook 7, its page of its own (there are no workspaces)."""
        if self.ui == "notebook":
            return f"{self.base}/notebooks/{name}?token={self.token}"
        workspace = "ws" + uuid.uuid4().hex[:12]
        return f"{self.base}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def add_notebook(self, name: str, cells: list[str], *, source: Path | None = None) -> Path:
        """Write a notebook into the server's root: *source*'s cells (if given) then *cells*."""
        if source is not None:
            nb = nbformat.read(source, as_version=4)  # type: ignore[no-untyped-call]
        else:
            nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
            nb.metadata["kernelspec"] = {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        new_cell = nbformat.v4.new_code_cell
        nb.cells.extend(new_cell(code) for code in cells)  # type: ignore[no-untyped-call]
        path = self.root / name
        nbformat.write(nb, path)  # type: ignore[no-untyped-call]
        return path

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def open_notebook(page: Page, lab: Lab, name: str, timeout: float = 60) -> None:
    """Open *name* and wait until all its cells are there and its kernel is idle."""
    page.goto(lab.notebook_url(name))
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


def wait_for(page: Page, script: str, arg: Any = None, timeout: float = 30) -> Any:
    """Wait until the JavaScript function *script* returns something truthy; return it."""
    handle = page.wait_for_function(script, arg=arg, timeout=timeout * 1000, polling=50)
    return handle.json_value()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, launched for a module's tests."""
    with sync_playwright() as p:
        browser = launch(p)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_page(browser: Browser, server: Lab) -> Iterator[Page]:
    """A page in a context of its own; the server's kernels are shut down after it."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()
        server.shutdown_kernels()


class _Reading(Protocol):
    status: str | None
    text: str | None


R = TypeVar("R", bound=_Reading)


def growth_moments(seen: Sequence[R], final: str) -> list[R]:
    """Samples, while running and before the end, whose text is longer than the one before."""
    moments = []
    before = ""
    for s in seen:
        text = s.text or ""
        if s.status == "running" and len(text) > len(before) and text != final:
            moments.append(s)
        before = text
    return moments
