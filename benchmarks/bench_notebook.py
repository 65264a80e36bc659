"""Wire cost of watching a run in a notebook cell: agentnb's NotebookSink against the naive ways.

Run from the repository root (needs the ``test`` extra, and ``jupyter_server`` for section 3)::

    python benchmarks/bench_notebook.py            # the full set, well under a minute
    python benchmarks/bench_notebook.py --quick    # smaller sizes, shorter pacing: a smoke test

What is measured (issue 3, point 2; the goal in brackets). An agent emits
5,000 chunks of 20 bytes (100 KB) into a real ipykernel, and every IOPub
message of the cell is captured off the kernel's own socket:

1. agentnb, burst (the chunks emitted as fast as possible), both as
   ``await agentnb.run(agent, sink=agentnb.notebook.NotebookSink())`` and as a
   ``%%agent`` cell: bytes on the wire [<= 400 KB], messages
   [<= 10 + 12 x seconds of streaming], kernel time in the sink [<= 50 ms], the
   final ``text/plain`` and the widget's text items against the emitted text
   [byte-exact]. Then a paced run (5,000 chunks over about 5 s) for the
   messages-per-second bound, and a short text with a leading line break, a run
   of blank lines and a trailing line break [final text byte-exact].
2. The naive ways in the same kernel: ``Output.append_stdout`` per chunk (quadratic:
   1,000 chunks only, nothing extrapolated), ``html.value = accumulated`` per
   chunk, ``with out: print(chunk, flush=True)``; each against agentnb at the same size.
3. A real ``jupyter server`` with its default IOPub rate limits, read over its
   kernel websocket as a browser does: a ``%%agent`` burst cell loses nothing
   [0 messages lost, no "IOPub message rate exceeded" in the server log]; the
   naive ``print(chunk, flush=True)`` per chunk is the contrast.

Definitions. Bytes of a message: its serialized header, parent header, metadata
and content (JSON, as sent) plus its buffers; the ZMQ identities and signature
are not counted. Messages of a cell: every IOPub message whose parent is the
cell's execute request, from ``status: busy`` to ``status: idle``. Seconds of
streaming: from the sink's ``open()`` to the end of its ``close()`` (the run's
life as the sink sees it), measured in the kernel. Kernel time in the sink: the
time spent inside ``NotebookSink.open/send/_flush/_timed_flush/close``, measured
in the kernel by wrapping those methods with ``time.perf_counter`` (the wrappers'
own cost is included). The kernel also counts every IOPub message it sends (its
``Session.send`` is wrapped), so a message dropped by the kernel's own socket
(libzmq's high-water mark) shows up as lost before any server is involved.

Byte and message counts hardly depend on the machine (a slow one may add a timed
flush); times do: the kernel-side times are medians of several rounds, and
nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import inspect
import itertools
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeAlias

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the harness package, at the repository's root

import agentnb  # noqa: E402
from harness.jupyter import Jupyter, KernelSocket  # noqa: E402
from harness.kernel import WIDGET_MIME, IOPub, Kernel, Msg  # noqa: E402
from harness.report import Table, yes  # noqa: E402

CHUNK_BYTES = 20
BYTES_GOAL = 400_000
SINK_TIME_GOAL_MS = 50.0
RATE_NOTICE = re.compile(r"IOPub (message|data) rate exceeded")
JUPYTER_SERVER_MISSING = "jupyter_server is not installed: pip install jupyter_server"


@dataclass(frozen=True)
class Sizes:
    burst_chunks: int  # the goal's size: 5,000 chunks = 100 KB
    rounds: int  # agentnb burst rounds per path (direct run, %%agent)
    paced_chunks: int
    paced_seconds: float
    append_chunks: int  # Output.append_stdout is quadratic: small N only
    naive_chunks: int  # html.value, with out: print(...)
    server_print_chunks: int  # the naive contrast through jupyter_server


FULL = Sizes(
    burst_chunks=5_000,
    rounds=5,
    paced_chunks=5_000,
    paced_seconds=5.0,
    append_chunks=1_000,
    naive_chunks=5_000,
    server_print_chunks=5_000,
)
QUICK = Sizes(
    burst_chunks=5_000,
    rounds=3,
    paced_chunks=5_000,
    paced_seconds=1.5,
    append_chunks=200,
    naive_chunks=1_000,
    # Below about 3,000 messages in 3 s the server's limit is never reached.
    server_print_chunks=5_000,
)


def make_chunks(n: int) -> list[str]:
    """The payload: *n* ASCII chunks of exactly 20 bytes; a line break every tenth chunk.

    The text is plain (no ``<``, ``&``, no blank lines) and does not end with a line
    break, so its Markdown and plain-text transcripts both equal it byte for byte.
    """
    return [f"tok{i:05d} abcdefghij" + ("\n" if i % 10 == 4 else " ") for i in range(n)]


# A short text with what a plain-text tidy-up would change: a leading line break, a run
# of blank lines, trailing spaces and a trailing line break (not part of the wire goals).
EDGE_CHUNKS = ["\n", "first line\n", "\n\n\n", "x = 1  \n", "last line\n"]


# -- the kernel side -----------------------------------------------------------------

# Runs once in each kernel. It wraps the kernel's Session.send to count every IOPub
# message per parent (a message lost at the kernel's socket is then visible), wraps
# NotebookSink's methods to time them (the class both `agentnb.run(..., sink=
# NotebookSink())` and `%%agent` use), and registers the agents.
KERNEL_SETUP = '''
import asyncio as _asyncio
import json as _json
import time as _time

import ipywidgets as _W

import agentnb
import agentnb.notebook
from agentnb.notebook._display import NotebookSink as _NotebookSink

%load_ext agentnb

@MAKE_CHUNKS@

_bench = {"sent": [], "sinks": [], "emits": [], "results": {}}
_bench_chunks = make_chunks(@MAX_CHUNKS@)


def _bench_install():
    session = get_ipython().kernel.session
    original_send = session.send
    sent = _bench["sent"]

    def send(stream, msg_or_type, *args, **kwargs):
        msg = original_send(stream, msg_or_type, *args, **kwargs)
        if isinstance(msg, dict):
            kind = msg["header"]["msg_type"]
            if not kind.endswith("_reply") and kind != "input_request":
                sent.append(msg["parent_header"].get("msg_id"))  # list.append: thread-safe
        return msg

    session.send = send
    perf = _time.perf_counter

    def timed(name, fn):
        def wrapper(self, *args, **kwargs):
            rec = self.__dict__.get("_bench_rec")
            if rec is None:
                rec = {"seconds": {}, "calls": {}, "t_open": perf(), "t_end": 0.0, "depth": 0}
                self.__dict__["_bench_rec"] = rec
                _bench["sinks"].append(rec)
            rec["calls"][name] = rec["calls"].get(name, 0) + 1
            if rec["depth"]:  # nested (send -> _flush): counted by the outer call
                return fn(self, *args, **kwargs)
            rec["depth"] = 1
            t0 = perf()
            try:
                return fn(self, *args, **kwargs)
            finally:
                t1 = perf()
                rec["depth"] = 0
                rec["seconds"][name] = rec["seconds"].get(name, 0.0) + (t1 - t0)
                rec["t_end"] = t1

        wrapper.__name__ = name
        return wrapper

    for name in ("open", "send", "_flush", "_timed_flush", "close", "_from_view"):
        setattr(_NotebookSink, name, timed(name, getattr(_NotebookSink, name)))


_bench_install()


@agentnb.agent(name="bench_burst")
async def bench_burst(input_text=""):
    """Emit the first N chunks (N: the input) as fast as possible."""
    chunks = _bench_chunks[: int(input_text.strip())]
    emit = agentnb.emit
    t0 = _time.perf_counter()
    for chunk in chunks:
        emit(chunk)
    _bench["emits"].append([t0, _time.perf_counter()])


@agentnb.agent(name="bench_edge")
async def bench_edge(input_text=""):
    """Emit EDGE_CHUNKS."""
    t0 = _time.perf_counter()
    for chunk in @EDGE_CHUNKS@:
        agentnb.emit(chunk)
    _bench["emits"].append([t0, _time.perf_counter()])


@agentnb.agent(name="bench_paced")
async def bench_paced(input_text=""):
    """Emit N chunks spread evenly over S seconds (input: "N S")."""
    n, seconds = input_text.split()
    chunks = _bench_chunks[: int(n)]
    step = float(seconds) / len(chunks)
    emit = agentnb.emit
    t0 = _time.perf_counter()
    for i, chunk in enumerate(chunks):
        delay = t0 + i * step - _time.perf_counter()
        if delay > 0:
            await _asyncio.sleep(delay)
        emit(chunk)
    _bench["emits"].append([t0, _time.perf_counter()])


def _bench_report(cell_ids):
    counts = {cid: 0 for cid in cell_ids}
    for parent in _bench["sent"]:
        if parent in counts:
            counts[parent] += 1
    sinks = [
        {k: v for k, v in rec.items() if k != "depth"} for rec in _bench["sinks"]
    ]
    report = {
        "sent": counts,
        "sinks": sinks,
        "emits": _bench["emits"],
        "results": _bench["results"],
    }
    _bench["sinks"] = []
    _bench["emits"] = []
    _bench["results"] = {}
    print(_json.dumps(report))
'''

AGENTNB_DIRECT = """\
await agentnb.run(bench_burst, "{n}", sink=agentnb.notebook.NotebookSink())
"""

AGENTNB_MAGIC = """\
%%agent bench_burst
{n}
"""

AGENTNB_EDGE = """\
await agentnb.run(bench_edge, "", sink=agentnb.notebook.NotebookSink())
"""

AGENTNB_PACED = """\
await agentnb.run(bench_paced, "{n} {seconds}", sink=agentnb.notebook.NotebookSink())
"""

NAIVE_APPEND = """\
_out = _W.Output()
display(_out)
_t0 = _time.perf_counter()
for _c in _bench_chunks[:{n}]:
    _out.append_stdout(_c)
_bench["results"]["loop"] = _time.perf_counter() - _t0
"""

NAIVE_HTML = """\
_html = _W.HTML()
display(_html)
_acc = ""
_t0 = _time.perf_counter()
for _c in _bench_chunks[:{n}]:
    _acc += _c
    _html.value = _acc
_bench["results"]["loop"] = _time.perf_counter() - _t0
"""

NAIVE_OUT_PRINT = """\
_out = _W.Output()
display(_out)
_t0 = _time.perf_counter()
with _out:
    for _c in _bench_chunks[:{n}]:
        print(_c, end="", flush=True)
_bench["results"]["loop"] = _time.perf_counter() - _t0
"""

NAIVE_PRINT = """\
_t0 = _time.perf_counter()
for _c in _bench_chunks[:{n}]:
    print(_c, end="", flush=True)
_bench["results"]["loop"] = _time.perf_counter() - _t0
"""


def kernel_setup(max_chunks: int) -> str:
    return (
        KERNEL_SETUP.replace("@MAKE_CHUNKS@", inspect.getsource(make_chunks))
        .replace("@MAX_CHUNKS@", str(max_chunks))
        .replace("@EDGE_CHUNKS@", repr(EDGE_CHUNKS))
    )


# -- the messages (harness.kernel's dicts, each with its "nbytes" on the wire) ----------


def _date(m: Msg) -> float:
    """The kernel's header date of *m*, in seconds since the epoch."""
    return float(m["header"]["date"].timestamp())


# -- the figures of one cell ---------------------------------------------------------


@dataclass
class Cell:
    """The IOPub messages of one executed cell, and what the kernel says about it."""

    label: str
    msg_id: str
    msgs: list[Msg]
    idle: bool  # its status: idle was captured
    sent: int = 0  # IOPub messages the kernel sent for it (its Session.send calls)
    sinks: list[dict[str, Any]] = field(default_factory=list)
    emits: list[list[float]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.msgs)

    @property
    def nbytes(self) -> int:
        return sum(m["nbytes"] for m in self.msgs)

    @property
    def lost_in_kernel(self) -> int:
        return self.sent - self.count

    def by_type(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for m in self.msgs:
            n, b = out.get(m["msg_type"], (0, 0))
            out[m["msg_type"]] = (n + 1, b + m["nbytes"])
        return out

    def comm_open_bytes(self) -> int:
        return sum(m["nbytes"] for m in self.msgs if m["msg_type"] == "comm_open")

    def comm_opens(self) -> str:
        """Each comm_open of the cell: the widget model it creates, and its bytes."""
        parts = []
        for m in self.msgs:
            if m["msg_type"] == "comm_open":
                state = (m["content"] or {}).get("data", {}).get("state", {})
                parts.append(f"{state.get('_model_name', '?')} {m['nbytes']:,} B")
        return " + ".join(parts)

    def span_seconds(self) -> float:
        """From the first to the last message of the cell (busy -> idle), by the kernel's dates."""
        dates = [_date(m) for m in self.msgs]
        return max(dates) - min(dates)

    def sink(self) -> dict[str, Any]:
        if len(self.sinks) != 1:
            raise RuntimeError(f"{self.label}: expected one NotebookSink, got {len(self.sinks)}")
        return self.sinks[0]

    def sink_ms(self) -> float:
        return 1e3 * sum(float(v) for v in self.sink()["seconds"].values())

    def streaming_seconds(self) -> float:
        rec = self.sink()
        return float(rec["t_end"] - rec["t_open"])

    def emit_seconds(self) -> float:
        if len(self.emits) != 1:
            raise RuntimeError(f"{self.label}: expected one agent run, got {len(self.emits)}")
        return self.emits[0][1] - self.emits[0][0]

    def message_bound(self) -> float:
        return 10 + 12 * self.streaming_seconds()

    def loop_seconds(self) -> float:
        return float(self.results["loop"])

    def batch_dates(self) -> list[float]:
        """The kernel's dates of the widget's item batches (custom "items" messages)."""
        return [
            _date(m)
            for m in self.msgs
            if m["msg_type"] == "comm_msg"
            and m["content"] is not None
            and m["content"]["data"].get("method") == "custom"
            and m["content"]["data"]["content"].get("t") == "items"
        ]

    def max_per_second(self, msg_type: str | None = None) -> int:
        """The most messages (of *msg_type*, or all) in any 1 s window, by the kernel's dates."""
        dates = sorted(_date(m) for m in self.msgs if msg_type in (None, m["msg_type"]))
        best = 0
        lo = 0
        for hi, d in enumerate(dates):
            while d - dates[lo] >= 1.0:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


def widget_text(msgs: list[Msg]) -> str:
    """The run's own text as the widget receives it: its item batches, put at their offsets."""
    items: list[list[Any]] = []
    for m in msgs:
        if m["msg_type"] != "comm_msg" or m["content"] is None:
            continue
        data = m["content"]["data"]
        if data.get("method") != "custom" or data["content"].get("t") != "items":
            continue
        offset = data["content"]["offset"]
        batch = data["content"]["items"]
        if offset > len(items):
            raise RuntimeError(f"a batch at offset {offset} after only {len(items)} items")
        items[offset : offset + len(batch)] = batch
    return "".join(item[2] for item in items if item[0] == "text" and item[1] == "")


def final_bundle(msgs: list[Msg]) -> dict[str, str]:
    """The last display_data of the cell that is not the widget's view: the final transcript."""
    bundles = [
        m["content"]["data"]
        for m in msgs
        if m["msg_type"] == "display_data"
        and m["content"] is not None
        and WIDGET_MIME not in m["content"]["data"]
    ]
    if not bundles:
        raise RuntimeError("no final transcript (display_data) in the cell's outputs")
    return dict(bundles[-1])


@dataclass(frozen=True)
class TextCheck:
    plain: bool
    markdown: bool
    widget: bool

    @property
    def ok(self) -> bool:
        return self.plain and self.markdown and self.widget


def check_text(msgs: list[Msg], expected: str) -> TextCheck:
    bundle = final_bundle(msgs)
    return TextCheck(
        plain=bundle.get("text/plain") == expected,
        markdown=bundle.get("text/markdown") == expected,
        widget=widget_text(msgs) == expected,
    )


# -- cells measured in a real kernel (harness.kernel) -----------------------------------


class Bench:
    """A real ipykernel (every IOPub message captured raw) and the cells measured in it."""

    def __init__(self, log: TextIO) -> None:
        self.kernel = Kernel({"AGENTNB_DEMO_SPEED": "0"}, log=log)

    def execute(self, label: str, code: str, *, keep: bool = True, timeout: float = 120) -> Cell:
        k = self.kernel
        k.capture.keep_content = keep
        msg_id = k.submit(code, store_history=False)
        k.wait_for(lambda: msg_id in k.replies, timeout, f"the reply to cell {label!r}")
        content = k.replies[msg_id]["content"]
        if content["status"] != "ok":
            tb = "\n".join(content.get("traceback", []))
            raise RuntimeError(f"cell {label!r} failed: {content.get('ename')}: {tb}")
        idle = k.capture.wait_idle(msg_id, 10.0)
        return Cell(label, msg_id, k.capture.of(msg_id), idle)

    def measure(self, label: str, code: str, *, keep: bool = True) -> Cell:
        """Execute a measured cell, then ask the kernel what it counted and timed for it."""
        cell = self.execute(label, code, keep=keep)
        report = self.report([cell.msg_id])
        cell.sent = report["sent"][cell.msg_id]
        cell.sinks = report["sinks"]
        cell.emits = report["emits"]
        cell.results = report["results"]
        return cell

    def report(self, cell_ids: list[str]) -> dict[str, Any]:
        query = self.execute("report", f"_bench_report({cell_ids!r})")
        text = "".join(
            m["content"]["text"]
            for m in query.msgs
            if m["msg_type"] == "stream"
            and m["content"] is not None
            and m["content"]["name"] == "stdout"
        )
        report: dict[str, Any] = json.loads(text)
        return report

    def close(self) -> None:
        self.kernel.close()


# -- a real jupyter server, read over its kernel websocket ---------------------------


@dataclass
class WsCell:
    """One cell executed through jupyter_server: what the websocket delivered, and the truth."""

    label: str
    msg_id: str
    received: list[dict[str, Any]]  # iopub messages of the cell from the websocket
    direct: list[Msg]  # the same cell's messages captured off the kernel's socket
    sent: int  # IOPub messages the kernel sent for it
    log: str  # what the server logged while the cell ran
    notices: int = 0  # rate-limit notices the server injected into the cell's output

    @property
    def lost(self) -> int:
        """Messages the kernel sent for the cell that never reached the websocket."""
        return self.sent - (len(self.received) - self.notices)

    @property
    def lost_to_server(self) -> int:
        """Captured off the kernel's socket but not delivered by the server."""
        got = {m["header"]["msg_id"] for m in self.received}
        return sum(1 for m in self.direct if m["msg_id"] not in got)

    @property
    def idle(self) -> bool:
        return any(
            m["header"]["msg_type"] == "status" and m["content"].get("execution_state") == "idle"
            for m in self.received
        )

    @property
    def rate_logged(self) -> bool:
        return bool(RATE_NOTICE.search(self.log))


async def _ws_cell(
    ws: KernelSocket, server: Jupyter, capture: IOPub, label: str, code: str, *, keep: bool
) -> WsCell:
    capture.keep_content = keep
    before = server.log_size()
    msg_id = await ws.execute(code)
    await asyncio.to_thread(capture.wait_idle, msg_id, 10.0)
    await asyncio.sleep(0.5)  # let the server's log catch up
    received = ws.of(msg_id, "iopub")
    direct = capture.of(msg_id)
    direct_ids = {m["msg_id"] for m in direct}
    notices = sum(
        1
        for m in received
        if m["header"]["msg_id"] not in direct_ids
        and m["header"]["msg_type"] == "stream"
        and RATE_NOTICE.search(m["content"].get("text", ""))
    )
    rep_id = await ws.execute(f"_bench_report([{msg_id!r}])")
    text = "".join(
        m["content"]["text"]
        for m in ws.of(rep_id, "iopub")
        if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )
    sent = json.loads(text)["sent"][msg_id]
    log = server.log_since(before)
    return WsCell(label, msg_id, received, direct, sent, log, notices)


async def _ws_ready(ws: KernelSocket, capture: IOPub) -> None:
    """Wait until the kernel answers through the server, and our SUB socket has joined."""
    for _ in range(120):
        info_id = ws.send("kernel_info_request", {})
        try:
            async with asyncio.timeout(1.0):
                await ws.until(info_id, "shell", "kernel_info_reply")
        except TimeoutError:
            continue
        if await asyncio.to_thread(capture.wait_any, 0.5):
            return
    raise RuntimeError("the server's kernel did not answer")


@dataclass
class ServerFigures:
    agentnb: WsCell
    agentnb_text: TextCheck
    naive: WsCell
    limits: str


def _server_limits() -> str:
    code = (
        "from jupyter_server.services.kernels.connection.channels import "
        "ZMQChannelsWebsocketConnection as C; "
        "print(C.limit_rate.default_value, C.iopub_msg_rate_limit.default_value, "
        "C.iopub_data_rate_limit.default_value, C.rate_limit_window.default_value)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    return (
        f"limit_rate={out[0]}, iopub_msg_rate_limit={float(out[1]):,.0f} msg/s, "
        f"iopub_data_rate_limit={float(out[2]):,.0f} B/s, rate_limit_window={out[3]} s"
    )


async def server_section(sizes: Sizes, expected: str) -> ServerFigures:
    server = await asyncio.to_thread(Jupyter, {"AGENTNB_DEMO_SPEED": "0"}, ui="server")
    try:
        kid, iopub = await asyncio.to_thread(server.start_kernel)
        capture = IOPub(iopub)
        ws = await KernelSocket.connect(server, kid)
        try:
            await _ws_ready(ws, capture)
            await ws.execute(kernel_setup(max(sizes.burst_chunks, sizes.server_print_chunks)))
            await ws.execute(AGENTNB_MAGIC.format(n=50))  # warm-up, not measured
            await ws.execute("_bench_report([])")
            ours = await _ws_cell(
                ws,
                server,
                capture,
                "agentnb %%agent burst",
                AGENTNB_MAGIC.format(n=sizes.burst_chunks),
                keep=True,
            )
            direct_msgs = capture.of(ours.msg_id)
            # The websocket's JSON messages, keyed as the kernel's are (msg_type on top).
            received = [{**m, "msg_type": m["header"]["msg_type"]} for m in ours.received]
            check = check_text(received, expected)
            if not check_text(direct_msgs, expected).ok:
                check = TextCheck(False, False, False)
            naive = await _ws_cell(
                ws,
                server,
                capture,
                "print(chunk, flush=True)",
                NAIVE_PRINT.format(n=sizes.server_print_chunks),
                keep=False,
            )
        finally:
            await ws.close()
            capture.close()
    finally:
        await asyncio.to_thread(server.close)
    return ServerFigures(ours, check, naive, _server_limits())


# -- reporting -------------------------------------------------------------------------


Row: TypeAlias = tuple[str, str, str, str]  # figure, measured, goal, met


def _kb(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:,.1f} MB"
    return f"{n / 1e3:,.1f} KB"


def _print_cell(cell: Cell, indent: str = "    ") -> None:
    parts = ", ".join(f"{t} {n} ({_kb(b)})" for t, (n, b) in sorted(cell.by_type().items()))
    print(f"{indent}{cell.count} messages, {cell.nbytes:,} bytes: {parts}")


@dataclass
class Ways:
    """A naive way and agentnb at the same size, for the ratio."""

    name: str
    n: int
    naive: Cell
    agentnb: Cell


@contextlib.contextmanager
def _kernel(log: TextIO) -> Iterator[Bench]:
    bench = Bench(log)
    try:
        yield bench
    finally:
        bench.close()


@dataclass
class KernelFigures:
    direct: list[Cell]  # await agentnb.run(..., sink=NotebookSink()), burst rounds
    magic: list[Cell]  # %%agent, burst rounds
    paced: Cell
    edge: Cell
    ways: list[Ways]
    texts: dict[int, str]  # the emitted text, by number of chunks


def kernel_section(sizes: Sizes, log: TextIO) -> KernelFigures:
    sizes_used = {sizes.burst_chunks, sizes.append_chunks, sizes.naive_chunks}
    texts = {n: "".join(make_chunks(n)) for n in sizes_used | {sizes.paced_chunks}}
    with _kernel(log) as k:
        k.execute("setup", kernel_setup(max(*sizes_used, sizes.paced_chunks)))
        k.execute("warm-up", AGENTNB_DIRECT.format(n=50))  # imports, widget classes
        k.execute("warm-up", AGENTNB_MAGIC.format(n=50))
        k.report([])

        direct: list[Cell] = []
        magic: list[Cell] = []
        for i in range(sizes.rounds):
            order = [("direct", direct, AGENTNB_DIRECT), ("%%agent", magic, AGENTNB_MAGIC)]
            if i % 2:
                order.reverse()
            for label, cells, code in order:
                cells.append(k.measure(f"{label} {i}", code.format(n=sizes.burst_chunks)))

        paced = k.measure(
            "paced", AGENTNB_PACED.format(n=sizes.paced_chunks, seconds=sizes.paced_seconds)
        )
        edge = k.measure("edge", AGENTNB_EDGE)

        at_size: dict[int, Cell] = {sizes.burst_chunks: direct[0]}
        for n in sorted(sizes_used - {sizes.burst_chunks}):
            at_size[n] = k.measure(f"direct {n}", AGENTNB_DIRECT.format(n=n))
        ways = [
            Ways(
                "out.append_stdout(chunk)",
                sizes.append_chunks,
                k.measure("append", NAIVE_APPEND.format(n=sizes.append_chunks), keep=False),
                at_size[sizes.append_chunks],
            ),
            Ways(
                "html.value = accumulated",
                sizes.naive_chunks,
                k.measure("html", NAIVE_HTML.format(n=sizes.naive_chunks), keep=False),
                at_size[sizes.naive_chunks],
            ),
            Ways(
                "with out: print(chunk, flush=True)",
                sizes.naive_chunks,
                k.measure("out print", NAIVE_OUT_PRINT.format(n=sizes.naive_chunks), keep=False),
                at_size[sizes.naive_chunks],
            ),
        ]
    return KernelFigures(direct, magic, paced, edge, ways, texts)


def _describe_burst(name: str, cells: list[Cell]) -> None:
    print(f"  {name}: {len(cells)} rounds")
    worst = max(cells, key=lambda c: (c.count, c.nbytes))
    _print_cell(worst, "    worst round: ")
    print(f"    comm_open: {worst.comm_opens()}")
    print(f"    bytes per round: {', '.join(f'{c.nbytes:,}' for c in cells)}")
    print(
        "    messages per round: "
        + ", ".join(f"{c.count} (bound {c.message_bound():.2f})" for c in cells)
    )
    sink_ms = [c.sink_ms() for c in cells]
    open_ms = [1e3 * c.sink()["seconds"].get("open", 0.0) for c in cells]
    print(
        f"    kernel time in the sink: median {statistics.median(sink_ms):.1f} ms, "
        f"best {min(sink_ms):.1f} ms (of which open(), making the widget: median "
        f"{statistics.median(open_ms):.1f} ms)"
    )
    print(
        "    seconds of streaming (sink open -> end of close): median "
        f"{statistics.median(c.streaming_seconds() for c in cells):.3f} s; the cell, busy -> "
        f"idle: median {statistics.median(c.span_seconds() for c in cells):.3f} s; the agent's "
        f"emit loop: median {1e3 * statistics.median(c.emit_seconds() for c in cells):.1f} ms"
    )
    print(f"    sink calls in the worst round: {worst.sink()['calls']}")
    print(
        f"    lost at the kernel's IOPub socket: {sum(c.lost_in_kernel for c in cells)}; "
        f"status idle captured: {yes(all(c.idle for c in cells))}"
    )


def _burst_rows(name: str, cells: list[Cell]) -> list[Row]:
    worst_bytes = max(c.nbytes for c in cells)
    over = [c for c in cells if c.count > c.message_bound()]
    worst = max(cells, key=lambda c: c.count - c.message_bound())
    return [
        (
            f"bytes on the wire, burst, {name}",
            f"{worst_bytes:,} B (worst of {len(cells)})",
            f"<= {BYTES_GOAL:,} B",
            yes(worst_bytes <= BYTES_GOAL),
        ),
        (
            "  of which the widget's comm_open (view + layout)",
            f"{max(c.comm_open_bytes() for c in cells):,} B",
            "-",
            "-",
        ),
        (
            f"messages, burst, {name}",
            f"{worst.count} (bound {worst.message_bound():.2f} for "
            f"{worst.streaming_seconds():.3f} s); over in {len(over)} of {len(cells)}",
            "<= 10 + 12 x s",
            yes(not over),
        ),
    ]


def report_kernel(sizes: Sizes, figs: KernelFigures) -> list[Row]:
    expected = figs.texts[sizes.burst_chunks]
    print(
        f"1. agentnb in a real ipykernel, {sizes.burst_chunks:,} chunks "
        "(every IOPub message captured off the kernel's socket)"
    )
    _describe_burst("await agentnb.run(agent, sink=NotebookSink()), burst", figs.direct)
    _describe_burst("%%agent cell, burst", figs.magic)
    rows = [
        *_burst_rows("await agentnb.run(...)", figs.direct),
        *_burst_rows("%%agent", figs.magic),
    ]
    bursts = figs.direct + figs.magic
    sink_ms = [c.sink_ms() for c in bursts]
    median_ms = statistics.median(sink_ms)
    best_ms = min(sink_ms)
    if median_ms <= SINK_TIME_GOAL_MS:
        met = "yes"
    else:
        met = "best only" if best_ms <= SINK_TIME_GOAL_MS else "no"
    rows.append(
        (
            "kernel time in the sink, burst (both ways)",
            f"median {median_ms:.1f} ms, best {best_ms:.1f} ms",
            f"<= {SINK_TIME_GOAL_MS:.0f} ms",
            met,
        )
    )
    ours = [*bursts, figs.paced, figs.edge]
    lost = sum(c.lost_in_kernel for c in ours)
    rows.append(
        (
            "agentnb messages lost at the kernel's own IOPub socket",
            f"{lost}; every status idle captured: {yes(all(c.idle for c in ours))}",
            "0",
            yes(lost == 0 and all(c.idle for c in ours)),
        )
    )
    checks = [check_text(c.msgs, expected) for c in bursts]
    exact = sum(c.plain and c.markdown for c in checks)
    rows.append(
        (
            "final text/plain and text/markdown == emitted text",
            f"{exact} of {len(checks)} cells",
            "byte-exact",
            yes(exact == len(checks)),
        )
    )
    rows.append(
        (
            "widget's text items, concatenated == emitted text",
            f"{sum(c.widget for c in checks)} of {len(checks)} cells",
            "byte-exact",
            yes(all(c.widget for c in checks)),
        )
    )

    paced = figs.paced
    paced_check = check_text(paced.msgs, figs.texts[sizes.paced_chunks])
    print(
        f"  paced: {sizes.paced_chunks:,} chunks over {sizes.paced_seconds:g} s "
        "(await agentnb.run(...))"
    )
    _print_cell(paced)
    print(
        f"    seconds of streaming {paced.streaming_seconds():.2f} s: bound "
        f"{paced.message_bound():.1f} messages; most comm_msg in any 1 s: "
        f"{paced.max_per_second('comm_msg')}, most messages in any 1 s: "
        f"{paced.max_per_second()}; kernel time in the sink {paced.sink_ms():.1f} ms; "
        f"text byte-exact: {yes(paced_check.ok)}"
    )
    batches = paced.batch_dates()
    gaps = [b - a for a, b in itertools.pairwise(batches[:-1])]  # the last flush may come early
    print(
        f"    item batches: {len(batches)}; smallest gap between batches, the last one left "
        f"out: {1e3 * min(gaps, default=0.0):.0f} ms (flush period 100 ms; header dates have "
        "ms resolution)"
    )
    rows.append(
        (
            f"messages, paced {sizes.paced_chunks:,} chunks over {sizes.paced_seconds:g} s",
            f"{paced.count} (bound {paced.message_bound():.1f} for "
            f"{paced.streaming_seconds():.2f} s); most in any 1 s: {paced.max_per_second()}",
            "<= 10 + 12 x s",
            yes(paced.count <= paced.message_bound()),
        )
    )
    rows.append(
        (
            "paced: final text and widget text == emitted text",
            f"plain {yes(paced_check.plain)}, markdown {yes(paced_check.markdown)}, "
            f"widget {yes(paced_check.widget)}",
            "byte-exact",
            yes(paced_check.ok),
        )
    )

    edge_text = "".join(EDGE_CHUNKS)
    plain = final_bundle(figs.edge.msgs).get("text/plain", "")
    widget = widget_text(figs.edge.msgs)
    print(f"  edge text {edge_text!r}: final text/plain {plain!r}, widget text {widget!r}")
    rows.append(
        (
            "edge text (leading/trailing/blank line breaks): plain, widget",
            f"plain {yes(plain == edge_text)}, widget {yes(widget == edge_text)}",
            "byte-exact",
            yes(plain == edge_text and widget == edge_text),
        )
    )
    return rows


def report_ways(sizes: Sizes, ways: list[Ways]) -> list[Row]:
    print("2. the naive ways, in the same kernel (agentnb: await agentnb.run(...) at the same N)")
    print(
        f"    {'way':<36} {'N':>6} {'messages':>9} {'bytes':>13} {'kernel loop':>12} "
        f"{'lost in kernel':>15} {'x bytes':>9} {'x msgs':>8}"
    )
    rows = []
    for w in ways:
        nv, ag = w.naive, w.agentnb
        print(
            f"    {w.name:<36} {w.n:>6,} {nv.count:>9,} {nv.nbytes:>13,} "
            f"{nv.loop_seconds():>10.2f} s {nv.lost_in_kernel:>15,} "
            f"{nv.nbytes / ag.nbytes:>8.1f}x {nv.count / ag.count:>7.1f}x"
        )
        print(
            f"    {'  agentnb NotebookSink':<36} {w.n:>6,} {ag.count:>9,} {ag.nbytes:>13,} "
            f"{ag.streaming_seconds():>10.2f} s {ag.lost_in_kernel:>15,}"
        )
        lost = f"; {nv.lost_in_kernel:,} lost in kernel" if nv.lost_in_kernel else ""
        rows.append(
            (
                f"naive: {w.name}, N={w.n:,}",
                f"{nv.count:,} msgs / {_kb(nv.nbytes)}: {nv.nbytes / ag.nbytes:,.0f}x bytes, "
                f"{nv.count / ag.count:,.0f}x msgs of agentnb{lost}",
                "(contrast)",
                "-",
            )
        )
    print(
        f"    append_stdout is quadratic: measured at N={sizes.append_chunks:,} only, nothing "
        "extrapolated.\n"
        "    kernel loop: the cell's loop for the naive ways, the run's life for agentnb.\n"
        "    lost in kernel: sent by the kernel but never captured off its IOPub socket\n"
        "    (libzmq's high-water mark drops them, see FACTS.md); not in the byte count."
    )
    return rows


def report_server(sizes: Sizes, expected: str) -> list[Row]:
    print("3. through a real jupyter server (default rate limits), over its kernel websocket")
    if importlib.util.find_spec("jupyter_server") is None:
        print(f"  not measured: {JUPYTER_SERVER_MISSING}")
        return [("lost behind jupyter_server's rate limit", "not measured", "0", "no")]
    figs = asyncio.run(server_section(sizes, expected))
    print(f"  limits: {figs.limits} (the defaults: empty config directory)")
    for cell in (figs.agentnb, figs.naive):
        print(
            f"  {cell.label}: the kernel sent {cell.sent:,}, captured off its socket "
            f"{len(cell.direct):,}, delivered by the websocket "
            f"{len(cell.received) - cell.notices:,} (+{cell.notices} rate-limit notice); "
            f"lost {cell.lost:,}; status idle delivered: {yes(cell.idle)}; "
            f"'IOPub ... rate exceeded' in the server log: {yes(cell.rate_logged)}"
        )
    ours, nv, check = figs.agentnb, figs.naive, figs.agentnb_text
    clean = ours.lost == 0 and ours.idle and not ours.rate_logged and not ours.notices
    return [
        (
            "lost behind jupyter_server's rate limit, %%agent burst",
            f"{ours.lost} of {ours.sent}; idle delivered: {yes(ours.idle)}; "
            f"rate-limit log line: {yes(ours.rate_logged)}",
            "0, no log line",
            yes(clean),
        ),
        (
            "text as delivered by the websocket == emitted text",
            f"plain {yes(check.plain)}, markdown {yes(check.markdown)}, widget {yes(check.widget)}",
            "byte-exact",
            yes(check.ok),
        ),
        (
            f"naive: print(chunk, flush=True) x{sizes.server_print_chunks:,} via the server",
            f"{nv.lost:,} of {nv.sent:,} lost ({100 * nv.lost / nv.sent:.0f}%); "
            f"log line: {yes(nv.rate_logged)}",
            "(contrast)",
            "-",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke test")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"agentnb {agentnb.__version__}, Python {sys.version.split()[0]}, {sys.platform}")
    print(
        f"payload: chunks of {CHUNK_BYTES} bytes; {sizes.burst_chunks:,} chunks = "
        f"{sizes.burst_chunks * CHUNK_BYTES:,} bytes"
    )
    print()
    with tempfile.TemporaryFile("w+") as kernel_log:
        figs = kernel_section(sizes, kernel_log)
    rows = report_kernel(sizes, figs)
    print()
    rows += report_ways(sizes, figs.ways)
    print()
    rows += report_server(sizes, figs.texts[sizes.burst_chunks])
    print()
    print("Summary (wire figures: the worst round; times: measured in the kernel, medians)")
    table = Table("figure", "measured", "goal", "met")
    table.extend(rows)
    table.print()
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
