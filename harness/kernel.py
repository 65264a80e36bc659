"""A real ipykernel driven with jupyter_client, its IOPub read raw off its socket.

::

    with Kernel({"AGENTNB_DEMO_SPEED": "0"}) as k:
        cell = k.execute("%load_ext agentnb\\nimport agentnb.demo")
        assert cell.ok
        ids = [k.submit(code) for code in cells]   # queued at once, like Run All
        done = [k.wait(i) for i in ids]

A thread reads the kernel's IOPub with a SUB socket of its own (:class:`IOPub`, no
high-water mark: nothing is dropped on this side, however long the caller looks
away), so a benchmark counts every message and its bytes, and a test sees them all
in arrival order. Each message is jupyter_client's dict (``msg_type``, ``header``
with its ``date`` parsed, ``parent_header``, ``metadata``, ``content``) plus
``nbytes`` (header, parent header, metadata, content and buffers as sent) and
``received`` (``time.monotonic()`` when read). A cell's messages are those whose
parent is its execute request. Shell replies are read by the caller's thread while
it waits. Widgets are found by their ``comm_open``; :meth:`Kernel.comm_send` sends
a message as a front end would.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import zmq
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from jupyter_client.session import Session

from harness import ROOT, child_env

__all__ = ["WIDGET_MIME", "Cell", "IOPub", "Kernel", "Msg", "parent_id"]

Msg = dict[str, Any]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def parent_id(msg: Msg) -> str | None:
    """The msg_id of the request *msg* answers (None if it answers none)."""
    parent = msg.get("parent_header") or {}
    value = parent.get("msg_id")
    return value if isinstance(value, str) else None


class IOPub:
    """Every message of the IOPub socket at *url*, read by a SUB socket in a thread.

    With ``keep_content = False``, the content of a large message (4 KiB or more,
    but not a status) is not parsed nor kept: its ``content`` is None (a naive
    way's quadratic output, counted but not stored).
    """

    def __init__(self, url: str) -> None:
        self._session = Session(key=b"")  # to parse messages only: signatures are not checked
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, 0)  # never drop on this side
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(url)
        self.messages: list[Msg] = []  # in arrival order
        self._by_parent: dict[str | None, list[Msg]] = {}
        self._cond = threading.Condition()
        self._stop = False
        self.keep_content = True
        self._thread = threading.Thread(target=self._read, name="iopub", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self._stop:
            if not poller.poll(50):
                continue
            frames: list[bytes] = self._sock.recv_multipart()
            received = time.monotonic()
            try:
                _, parts = self._session.feed_identities(frames)
                msg = self._session.deserialize(parts, content=False)
            except (ValueError, TypeError):
                continue  # an XPUB welcome or another non-message
            raw = bytes(cast(bytes, parts[4]))
            keep = self.keep_content or len(raw) < 4096 or msg["msg_type"] == "status"
            msg["content"] = json.loads(raw) if keep else None
            msg["nbytes"] = sum(len(p) for p in parts[1:])
            msg["received"] = received
            with self._cond:
                self.messages.append(msg)
                self._by_parent.setdefault(parent_id(msg), []).append(msg)
                self._cond.notify_all()

    def of(self, parent: str | None) -> list[Msg]:
        """The messages answering the request *parent*, in arrival order."""
        with self._cond:
            return list(self._by_parent.get(parent, []))

    def wait(self, check: Callable[[], bool], timeout: float) -> bool:
        """Wait until *check()* (looked at whenever a message arrives); False after *timeout*."""
        with self._cond:
            return self._cond.wait_for(check, timeout)

    def idle(self, parent: str) -> bool:
        """The request *parent*'s ``status: idle`` has arrived."""
        return any(
            m["msg_type"] == "status"
            and m["content"] is not None
            and m["content"].get("execution_state") == "idle"
            for m in self._by_parent.get(parent, [])
        )

    def wait_idle(self, parent: str, timeout: float) -> bool:
        return self.wait(lambda: self.idle(parent), timeout)

    def wait_any(self, timeout: float) -> bool:
        """Wait for a first message: then this socket has joined the kernel's."""
        return self.wait(lambda: bool(self.messages), timeout)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self._sock.close(linger=0)
        self._ctx.term()


@dataclass
class Cell:
    """One execute request: its reply and the IOPub messages whose parent it is."""

    msg_id: str
    code: str
    iopub: IOPub = field(repr=False)
    reply: Msg | None = None

    @property
    def messages(self) -> list[Msg]:
        return self.iopub.of(self.msg_id)

    @property
    def ok(self) -> bool:
        return self.reply is not None and self.reply["content"]["status"] == "ok"

    @property
    def status(self) -> str | None:
        return None if self.reply is None else str(self.reply["content"]["status"])

    def of_type(self, *types: str) -> list[Msg]:
        return [m for m in self.messages if m["msg_type"] in types]

    @property
    def displays(self) -> list[dict[str, Any]]:
        """The data bundles of this cell's display_data / execute_result outputs."""
        return [m["content"]["data"] for m in self.of_type("display_data", "execute_result")]

    @property
    def final(self) -> dict[str, Any]:
        """The last non-widget display bundle (the run's final transcript)."""
        bundles = [d for d in self.displays if WIDGET_MIME not in d]
        assert bundles, f"no final display in cell {self.code!r}: {self.summary()}"
        return bundles[-1]

    @property
    def widget_ids(self) -> list[str]:
        """Model ids of the widgets this cell displayed, in order."""
        return [d[WIDGET_MIME]["model_id"] for d in self.displays if WIDGET_MIME in d]

    def stream(self, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == name
        )

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m["content"] for m in self.of_type("error")]

    @property
    def payload(self) -> list[dict[str, Any]]:
        return [] if self.reply is None else list(self.reply["content"].get("payload", []))

    def summary(self) -> str:
        """A short description for assertion messages."""
        parts = [f"status={self.status}"]
        for m in self.messages:
            kind, content = m["msg_type"], m["content"] or {}
            if kind in ("status", "execute_input"):
                continue
            if kind == "stream":
                parts.append(f"{content['name']}: {content['text'][:300]!r}")
            elif kind == "error":
                parts.append(f"error: {content['ename']}: {content['evalue'][:300]}")
            elif kind in ("display_data", "execute_result"):
                parts.append(f"{kind}: {sorted(content['data'])}")
            else:
                parts.append(kind)
        return "; ".join(parts)


class Kernel:
    """A real ipykernel (``python3``) of this checkout; see the module docstring.

    *env* is added to this process's environment (:func:`harness.child_env`); the
    kernel runs in *cwd* (the repository's root) and writes to *log* (or inherits
    this process's output).
    """

    def __init__(
        self,
        env: dict[str, str] | None = None,
        *,
        cwd: Path = ROOT,
        log: IO[Any] | None = None,
        startup_timeout: float = 60,
    ) -> None:
        self.km = KernelManager(kernel_name="python3")
        output: dict[str, Any] = {} if log is None else {"stdout": log, "stderr": log}
        self.km.start_kernel(env=child_env(env), cwd=str(cwd), **output)
        info = self.km.get_connection_info()
        self.capture = IOPub(f"{info['transport']}://{info['ip']}:{info['iopub_port']}")
        self.kc: BlockingKernelClient = self.km.client()
        self.kc.start_channels(iopub=False, stdin=False, hb=False, control=False)
        self.replies: dict[str, Msg] = {}  # parent msg_id -> shell reply
        self.reply_order: list[str] = []  # parent msg_ids, in the order replies came
        self.cells: dict[str, Cell] = {}
        try:
            self._ready(startup_timeout)
        except BaseException:
            self.close()
            raise

    def _ready(self, timeout: float) -> None:
        """Wait until the kernel answers on the shell, and the IOPub reader has joined."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.km.is_alive():
                raise RuntimeError("the kernel exited while starting")
            msg_id = self.kernel_info()
            try:
                self.wait_for(lambda: msg_id in self.replies, 1.0)  # noqa: B023 (used at once)
            except AssertionError:
                continue
            if self.capture.wait_any(0.5):
                return
        raise RuntimeError(f"the kernel did not start within {timeout} s")

    # -- life cycle ------------------------------------------------------------

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
        self.capture.close()

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    # -- reading ---------------------------------------------------------------

    @property
    def iopub(self) -> list[Msg]:
        """Every IOPub message so far, in arrival order (it grows as they come)."""
        return self.capture.messages

    def _read_shell(self, timeout: float) -> int:
        """Take the shell replies that arrive within *timeout* s (at least those waiting)."""
        count = 0
        if self.kc.shell_channel.socket.poll(timeout * 1000):
            while True:
                try:
                    msg = self.kc.shell_channel.get_msg(timeout=0)
                except queue.Empty:
                    return count
                count += 1
                parent = parent_id(msg)
                if parent is not None:
                    self.replies[parent] = msg
                    self.reply_order.append(parent)
                    if parent in self.cells:
                        self.cells[parent].reply = msg
        return count

    def pump(self, timeout: float = 0.02) -> None:
        """Read replies for *timeout* seconds (IOPub is read all along by its thread)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self._read_shell(left)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
        """Read replies until *predicate()* is true; fail after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._read_shell(0)
            if predicate():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
            self._read_shell(0.005)

    def idle(self, msg_id: str) -> bool:
        """The request *msg_id* has its reply and its ``status: idle``."""
        return msg_id in self.replies and self.capture.idle(msg_id)

    # -- requests --------------------------------------------------------------

    def submit(self, code: str, *, interactive: bool = True, store_history: bool = True) -> str:
        """Send an execute request without waiting; return its msg_id.

        *interactive*: as a person's front end does (it could answer input
        requests); ``False`` as headless executors (nbclient, nbval) do.
        """
        msg_id: str = self.kc.execute(code, store_history=store_history, allow_stdin=interactive)
        self.cells[msg_id] = Cell(msg_id, code, self.capture, self.replies.get(msg_id))
        return msg_id

    def wait(self, msg_id: str, timeout: float = 30) -> Cell:
        """Wait until the request *msg_id* is done (reply and idle); return its cell."""
        self.wait_for(lambda: self.idle(msg_id), timeout, f"the reply to {msg_id}")
        cell = self.cells[msg_id]
        cell.reply = self.replies[msg_id]
        return cell

    def execute(self, code: str, timeout: float = 30) -> Cell:
        """Run one cell to completion."""
        return self.wait(self.submit(code), timeout)

    def run_ok(self, code: str, timeout: float = 30) -> Cell:
        """Run one cell and fail unless it succeeded."""
        cell = self.execute(code, timeout)
        assert cell.ok, cell.summary()
        return cell

    def value(self, expr: str, timeout: float = 30) -> str:
        """The text/plain repr of *expr* evaluated in the kernel."""
        cell = self.run_ok(expr, timeout)
        results = cell.of_type("execute_result")
        assert results, f"{expr!r} gave no value: {cell.summary()}"
        return str(results[-1]["content"]["data"]["text/plain"])

    def kernel_info(self) -> str:
        msg_id: str = self.kc.kernel_info()
        return msg_id

    # -- widgets ---------------------------------------------------------------

    def comm_opens(self) -> list[Msg]:
        return [m for m in self.iopub if m["msg_type"] == "comm_open"]

    def comm_msgs(self, comm_id: str) -> list[Msg]:
        return [
            m
            for m in self.iopub
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
        ]

    def custom(self, comm_id: str) -> list[dict[str, Any]]:
        """The custom messages the kernel sent to the widget *comm_id*."""
        return [
            m["content"]["data"]["content"]
            for m in self.comm_msgs(comm_id)
            if m["content"]["data"].get("method") == "custom"
        ]

    def states(self, comm_id: str) -> list[dict[str, Any]]:
        """The state updates the kernel sent to the widget *comm_id*."""
        return [
            m["content"]["data"]["state"]
            for m in self.comm_msgs(comm_id)
            if m["content"]["data"].get("method") == "update"
        ]

    def comm_send(self, comm_id: str, content: dict[str, Any]) -> str:
        """Send a custom message to a widget, as its front end does (``model.send``)."""
        msg = self.kc.session.msg(
            "comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}}
        )
        self.kc.session.send(self.kc.shell_channel.socket, msg)
        return str(msg["header"]["msg_id"])
