"""A real ipykernel for tests: execute cells, queue requests, collect IOPub per cell, drive widgets.

::

    with Kernel({"AGENTNB_DEMO_SPEED": "0"}) as k:
        cell = k.execute("%load_ext agentnb\\nimport agentnb.demo")
        assert cell.ok
        ids = [k.submit(code) for code in cells]   # queued at once, like Run All
        done = [k.wait(i) for i in ids]

Every IOPub message is kept (in arrival order, with the time it was read); a
cell's messages are those whose parent header is the cell's execute_request.
Widgets are found by their ``comm_open`` (whose parent header says which cell
made them); :meth:`Kernel.comm_send` sends a message as a front end would.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

__all__ = ["Cell", "Kernel", "Msg"]

Msg = dict[str, Any]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def parent_id(msg: Msg) -> str | None:
    parent = msg.get("parent_header") or {}
    value = parent.get("msg_id")
    return value if isinstance(value, str) else None


@dataclass
class Cell:
    """One execute request: its reply and the IOPub messages whose parent it is."""

    msg_id: str
    code: str
    reply: Msg | None = None
    messages: list[Msg] = field(default_factory=list)

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
            kind, content = m["msg_type"], m["content"]
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
    """A real ipykernel started with jupyter_client; see the module docstring."""

    def __init__(self, env: dict[str, str] | None = None, *, startup_timeout: float = 60) -> None:
        full_env = {**os.environ, **(env or {})}
        full_env.pop("PYTEST_CURRENT_TEST", None)
        km, kc = start_new_kernel(
            kernel_name="python3", env=full_env, startup_timeout=startup_timeout
        )
        self.km: KernelManager = km
        self.kc: BlockingKernelClient = kc
        self.iopub: list[Msg] = []  # every IOPub message, in arrival order
        self.received: dict[str, float] = {}  # msg_id -> time.monotonic() when read
        self.replies: dict[str, Msg] = {}  # parent msg_id -> shell reply
        self.reply_order: list[str] = []  # parent msg_ids, in the order replies came
        self.cells: dict[str, Cell] = {}
        # Drain what start-up left (kernel_info reply, status messages).
        self.pump(0.2)

    # -- life cycle ------------------------------------------------------------

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def __enter__(self) -> Kernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def interrupt(self) -> None:
        self.km.interrupt_kernel()

    # -- reading ---------------------------------------------------------------

    def _take(self, msg: Msg, shell: bool) -> None:
        self.received[msg["header"]["msg_id"]] = time.monotonic()
        parent = parent_id(msg)
        if shell:
            if parent is not None:
                self.replies[parent] = msg
                self.reply_order.append(parent)
                if parent in self.cells:
                    self.cells[parent].reply = msg
            return
        self.iopub.append(msg)
        if parent is not None and parent in self.cells:
            self.cells[parent].messages.append(msg)

    def pump(self, timeout: float = 0.02) -> int:
        """Read every message available within *timeout*; return how many were read."""
        count = 0
        deadline = time.monotonic() + timeout
        while True:
            got = False
            for channel, shell in ((self.kc.iopub_channel, False), (self.kc.shell_channel, True)):
                try:
                    msg = channel.get_msg(timeout=0)
                except queue.Empty:
                    continue
                self._take(msg, shell)
                got = True
                count += 1
            if got:
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return count
            self.kc.iopub_channel.socket.poll(min(left, 0.01) * 1000)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
        """Pump messages until *predicate()* is true; fail after *timeout* seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
            self.pump(0.02)

    def idle(self, msg_id: str) -> bool:
        """The request *msg_id* has its reply and its ``status: idle``."""
        return msg_id in self.replies and any(
            m["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            and parent_id(m) == msg_id
            for m in self.iopub
        )

    # -- requests --------------------------------------------------------------

    def submit(self, code: str, *, interactive: bool = True) -> str:
        """Send an execute request without waiting; return its msg_id.

        *interactive*: as a person's front end does (it could answer input
        requests); ``False`` as headless executors (nbclient, nbval) do.
        """
        msg_id: str = self.kc.execute(code, store_history=True, allow_stdin=interactive)
        self.cells[msg_id] = Cell(msg_id, code)
        return msg_id

    def wait(self, msg_id: str, timeout: float = 30) -> Cell:
        """Wait until the request *msg_id* is done (reply and idle); return its cell."""
        self.wait_for(lambda: self.idle(msg_id), timeout, f"the reply to {msg_id}")
        return self.cells[msg_id]

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

    def run_views(self) -> dict[str, Msg]:
        """comm id -> comm_open message, for every RunView widget opened so far."""
        return {
            m["content"]["comm_id"]: m
            for m in self.comm_opens()
            if {"key", "title", "status"} <= set(m["content"]["data"].get("state", {}))
        }

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
