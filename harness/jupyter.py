"""A real Jupyter server in a temporary directory, and a kernel's websocket as a browser uses it.

::

    with Jupyter({"AGENTNB_DEMO_SPEED": "1"}, ui="lab") as lab:
        lab.add_notebook("demo.ipynb", ["%load_ext agentnb", "%%agent poet\\nthe sea"])
        page.goto(lab.notebook_url("demo.ipynb"))             # see harness.browser

``ui`` picks the front: ``"server"`` (bare ``jupyter_server``), ``"lab"``
(JupyterLab) or ``"notebook"`` (Notebook 7, whose notebooks open in their own
page, ``/notebooks/NAME``). The server runs the interpreter that runs this file
on 127.0.0.1, a free port and a random token, with its root, configuration
(empty: the default IOPub rate limits apply), data, runtime, settings,
workspaces and IPython directories all in a temporary directory: nothing of the
machine's own Jupyter set-up leaks in, and nothing is written outside it. Its
kernels inherit the environment given and import this checkout (agentnb, tests).
JupyterLab and Notebook 7 expose their app as ``window.jupyterapp``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Literal

from harness import child_env

__all__ = ["UI", "Jupyter", "KernelSocket", "free_port", "require"]

UI = Literal["server", "lab", "notebook"]
# Per front: its name, the module that starts it, the option that sets window.jupyterapp.
_FRONTS: dict[str, tuple[str, str, str | None]] = {
    "server": ("jupyter_server", "jupyter_server", None),
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def require(ui: UI) -> list[str]:
    """What is missing to run *ui* (each with what to install); empty if nothing is."""
    name, module, _ = _FRONTS[ui]
    problems = [
        f"{needed} is not installed in {sys.executable}: pip install {needed}"
        for needed in dict.fromkeys((module, "ipykernel"))
        if importlib.util.find_spec(needed) is None
    ]
    if ui == "notebook" and not problems:
        version = importlib.metadata.version("notebook")
        if int(version.split(".")[0]) < 7:
            problems.append(
                f"notebook {version} in {sys.executable}, {name} is needed: "
                "pip install 'notebook>=7'"
            )
    return problems


class Jupyter:
    """A Jupyter server (*ui*) in a temporary directory; see the module docstring."""

    def __init__(
        self, env: dict[str, str] | None = None, *, ui: UI = "lab", timeout: float = 60
    ) -> None:
        problems = require(ui)
        if problems:
            raise RuntimeError("cannot start a Jupyter server: " + "; ".join(problems))
        self.ui = ui
        self.name, module, expose = _FRONTS[ui]
        self._tmp = tempfile.TemporaryDirectory(
            prefix="agentnb-jupyter-", ignore_cleanup_errors=True
        )
        base = Path(self._tmp.name)
        self.root = base / "root"
        dirs = {
            "JUPYTER_CONFIG_DIR": base / "config",
            "JUPYTER_DATA_DIR": base / "data",
            "JUPYTER_RUNTIME_DIR": base / "runtime",
            "JUPYTERLAB_SETTINGS_DIR": base / "settings",
            "JUPYTERLAB_WORKSPACES_DIR": base / "workspaces",
            "IPYTHONDIR": base / "ipython",
        }
        for path in (self.root, *dirs.values()):
            path.mkdir()
        for name, values in _SETTINGS.items():
            target = dirs["JUPYTERLAB_SETTINGS_DIR"] / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(values))
        self.runtime = dirs["JUPYTER_RUNTIME_DIR"]
        full_env = {k: v for k, v in child_env(env).items() if not k.startswith("JUPYTER")}
        full_env.update({k: str(v) for k, v in dirs.items()})
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
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
                *([expose] if expose else []),
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
                time.sleep(0.1)  # polling: the server is not listening yet
                continue
            return
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log()}")

    # -- its log -------------------------------------------------------------------

    def log(self, tail: int = 4000) -> str:
        """The end of the server's log (kernel tracebacks land here too)."""
        return self.log_since(0)[-tail:]

    def log_size(self) -> int:
        self._log.flush()
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        """What the server has logged since *offset* (a :meth:`log_size`)."""
        self._log.flush()
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    # -- its REST API ----------------------------------------------------------------

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the REST API; the JSON answer (None if empty)."""
        request = urllib.request.Request(
            f"{self.base}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = response.read()
        return json.loads(answer) if answer else None

    def start_kernel(self, timeout: float = 30) -> tuple[str, str]:
        """A new python3 kernel: its id, and the IOPub address from its connection file."""
        kernel_id: str = self.api("POST", "/api/kernels", {"name": "python3"})["id"]
        path = self.runtime / f"kernel-{kernel_id}.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no connection file for kernel {kernel_id}:\n{self.log()}")
            time.sleep(0.02)  # polling: the server writes the file as the kernel starts
        info = json.loads(path.read_text())
        return kernel_id, f"{info['transport']}://{info['ip']}:{info['iopub_port']}"

    def shutdown_kernels(self) -> None:
        """End every session (and its kernel): each test starts from a fresh kernel."""
        for session in self.api("GET", "/api/sessions"):
            self.api("DELETE", f"/api/sessions/{session['id']}")

    # -- notebooks -------------------------------------------------------------------

    def notebook_url(self, name: str) -> str:
        """*name* opened in a fresh workspace (the default one reopens earlier notebooks);
        in Notebook 7, its page of its own (there are no workspaces)."""
        if self.ui == "notebook":
            return f"{self.base}/notebooks/{name}?token={self.token}"
        workspace = "ws" + uuid.uuid4().hex[:12]
        return f"{self.base}/lab/workspaces/{workspace}/tree/{name}?reset&token={self.token}"

    def add_notebook(self, name: str, cells: list[str], *, source: Path | None = None) -> Path:
        """Write a notebook into the server's root: *source*'s cells (if given) then *cells*."""
        import nbformat

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

    def __enter__(self) -> Jupyter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ws_decode(raw: str | bytes) -> dict[str, Any]:
    """A message from the kernel websocket (JSON text, or the legacy binary frame with buffers)."""
    if isinstance(raw, str):
        msg: dict[str, Any] = json.loads(raw)
        return msg
    nbufs = int.from_bytes(raw[:4], "big")
    offsets = [int.from_bytes(raw[4 * (i + 1) : 4 * (i + 2)], "big") for i in range(nbufs)]
    msg = json.loads(raw[offsets[0] : offsets[1] if nbufs > 1 else len(raw)])
    return msg


class KernelSocket:
    """A kernel's websocket on a :class:`Jupyter` server, spoken as a browser does (JSON).

    Every message received is kept in :attr:`messages` (a reader task reads them).
    """

    def __init__(self, conn: Any) -> None:
        from jupyter_client.session import Session

        self.conn = conn
        self.session = Session(username="harness", key=b"")
        self.messages: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, server: Jupyter, kernel_id: str) -> KernelSocket:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = (
            f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels"
            f"?session_id={uuid.uuid4().hex}"
        )
        request = HTTPRequest(url, headers={"Authorization": f"token {server.token}"})
        return cls(await websocket_connect(request, max_message_size=64 * 1024 * 1024))

    async def _read(self) -> None:
        while True:
            raw = await self.conn.read_message()
            if raw is None:
                return
            self.messages.append(_ws_decode(raw))
            self._arrived.set()

    def send(self, msg_type: str, content: dict[str, Any]) -> str:
        """Send a shell request; its msg_id."""
        from jupyter_client.jsonutil import json_default

        msg = self.session.msg(msg_type, content)
        msg["channel"] = "shell"
        self.conn.write_message(json.dumps(msg, default=json_default))
        msg_id: str = msg["header"]["msg_id"]
        return msg_id

    def of(self, msg_id: str, channel: str) -> list[dict[str, Any]]:
        """The messages on *channel* answering *msg_id*."""
        return [
            m
            for m in self.messages
            if m.get("channel") == channel and m["parent_header"].get("msg_id") == msg_id
        ]

    def _arrived_yet(self, msg_id: str, channel: str, msg_type: str, state: str) -> bool:
        return any(
            m["header"]["msg_type"] == msg_type
            and (not state or m["content"].get("execution_state") == state)
            for m in self.of(msg_id, channel)
        )

    async def until(self, msg_id: str, channel: str, msg_type: str, state: str = "") -> None:
        """Wait until a *msg_type* message (in *state*) answering *msg_id* has arrived."""
        while True:
            self._arrived.clear()
            if self._arrived_yet(msg_id, channel, msg_type, state):
                return
            await self._arrived.wait()

    async def execute(self, code: str) -> str:
        """Execute *code* (headless); return once its reply and its idle status arrived.

        A failing cell raises, so does no reply within 120 s; an idle status still
        missing 10 s after the reply is not waited for (the caller sees it is missing).
        """
        content = {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg_id = self.send("execute_request", content)
        async with asyncio.timeout(120):
            await self.until(msg_id, "shell", "execute_reply")
        reply = self.of(msg_id, "shell")[-1]["content"]
        if reply["status"] != "ok":
            raise RuntimeError(f"cell failed: {reply.get('ename')}: {reply.get('evalue')}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self.until(msg_id, "iopub", "status", "idle")
        return msg_id

    async def close(self) -> None:
        self.conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)
