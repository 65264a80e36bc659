"""The live view of a run in a notebook cell, and the sink that feeds it.

Wire discipline. The obvious ways cost too much: ``Output.append_stdout`` re-sends
every output so far (quadratic: 39 MB for 1,000 chunks), and one message per
chunk exceeds jupyter_server's default 1,000 messages/s, which it drops
(``benchmarks/bench_notebook.py`` measures both). So:

* The view is one widget. Events become small display items kept in an
  append-only log; the kernel sends only new items, in batches, as custom
  messages tagged with their offset (deltas, never snapshots).
* The first batch goes out at once (leading edge); later ones at most once per
  ``interval`` (0.1 s), and the last one always: a burst of 5,000 chunks costs a
  few messages, far below jupyter_server's rate limit.
* A view that missed a batch, or is created late, asks for what it lacks.
* Streamed parts grow in place while unsent, as text does: a reasoning block,
  a tool call's argument text (one item per batch, not per fragment), the
  latest state and usage lines.
* When the run ends, the cell gets its final transcript as an ordinary output
  (``text/markdown`` + ``text/plain``), so a saved or headless-executed
  notebook shows the run, and nbval can check it.

Questions (``agentnb.ask``). The sink takes answers (``answers``) when the cell
runs where a person can answer: its execute request allows input
(``allow_stdin``), as JupyterLab's do and headless executors' (nbclient,
papermill, nbval) do not; there a question takes its default. A question is the
item ``["ask", label, ask_id, prompt, choices, default, call_id]`` (``choices``
None: free text; ``default`` None: none), sent at once, not held by the batching;
its answer is ``["answer", label, ask_id, value, by]``. The view answers with
``{"t": "answer", "ask_id", "value"}``; an answer the run refuses comes back as
``{"t": "refused", "ask_id", "message"}``, the question still open.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._console import ConsoleSink
from .._events import (
    Answer,
    Ask,
    Cancelled,
    Custom,
    Done,
    Error,
    Event,
    Reasoning,
    StateDelta,
    StateSnapshot,
    Status,
    StepEnd,
    StepStart,
    TextChunk,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolResult,
    Usage,
)
from .._exceptions import InvalidAnswer
from .._format import brief, call_line, result_line, state_line, usage_line
from .._run import Run, UsageTotals, start
from .._run import run as _run
from ._transcript import Transcript

__all__ = ["NotebookSink", "RunView", "notebook_sink", "show", "start_in_cell"]

_HERE = Path(__file__).parent
_INSTALL_HINT = (
    "agentnb: no live notebook view here (this needs a Jupyter kernel with ipywidgets and "
    "anywidget: pip install 'agentnb[notebook]'); streaming to the console instead."
)
_FORMATS = ("markdown", "text", "events")
Item = list[Any]


def _widget_base() -> type:
    try:
        import anywidget
    except ImportError:
        raise ImportError(
            "the live notebook view needs ipywidgets and anywidget: pip install 'agentnb[notebook]'"
        ) from None
    return anywidget.AnyWidget


def _make_view_class() -> type:
    import traitlets

    class RunView(_widget_base()):  # type: ignore[misc]
        """The widget: status line, streamed Markdown, tool lines, errors, a stop button."""

        _esm = _HERE / "run_view.js"
        _css = _HERE / "run_view.css"
        key = traitlets.Unicode("").tag(sync=True)  # the front end's per-model state
        title = traitlets.Unicode("").tag(sync=True)
        status = traitlets.Unicode("running").tag(sync=True)
        started = traitlets.Float(0.0).tag(sync=True)
        ended = traitlets.Float(0.0).tag(sync=True)
        items = traitlets.Int(0).tag(sync=True)  # the display items sent, once the run ended

        def __repr__(self) -> str:
            return f"RunView({self.title})"

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            # Where widgets do not render (GitHub, nbconvert, a notebook saved without
            # widget state) the view shows nothing: the transcript below it is the run.
            bundle = super()._repr_mimebundle_(**kwargs)
            data = bundle[0] if isinstance(bundle, tuple) else bundle  # (data, metadata)
            if isinstance(data, dict) and "text/plain" in data:
                data["text/plain"] = ""
            return bundle

    return RunView


_view_class: type | None = None


def RunView(**traits: Any) -> Any:  # noqa: N802 (a class made on first use, named like one)
    """Make the live-view widget (the class is built on first use: ipywidgets is optional)."""
    global _view_class
    if _view_class is None:
        _view_class = _make_view_class()
    return _view_class(**traits)


_layout: Any = None


def _shared_layout() -> Any:
    """One Layout model for every run view: a widget's own costs a message and 1.6 KB."""
    global _layout
    if _layout is None:
        import ipywidgets

        _layout = ipywidgets.Layout()
    return _layout


class NotebookSink:
    """Show a run live in the current cell; leave its transcript in the cell's outputs.

    ``await agentnb.run(agent, ..., sink=NotebookSink())``. *fmt* is how the final
    transcript is left: ``markdown`` (default, with a plain-text twin), ``text``
    or ``events`` (one line per event). *interval* is the flush period. With
    *error_in_cell*, the run's own error is left out of the transcript: the
    caller raises it, so the cell shows it once, as its error output.
    *answers*: whether the view answers the run's questions (``agentnb.ask``);
    by default, whether the cell it is made in was run where a person can answer
    (not headless: there a question takes its default).
    """

    def __init__(
        self,
        *,
        fmt: str = "markdown",
        interval: float = 0.1,
        error_in_cell: bool = False,
        answers: bool | None = None,
    ) -> None:
        if fmt not in _FORMATS:
            raise ValueError(f"fmt must be one of {', '.join(_FORMATS)}, got {fmt!r}")
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        if answers is not None and not isinstance(answers, bool):
            raise ValueError(f"answers must be True, False or None, got {answers!r}")
        self.answers = _person_can_answer() if answers is None else answers
        self.fmt = fmt
        self.interval = interval
        self.view: Any = None
        self.run: Run | None = None
        self.transcript = Transcript(error_elsewhere=error_in_cell)
        self._lines: list[str] = []  # fmt="events"
        self._items: list[Item] = []
        self._sent = 0
        self._last_flush = -1e9
        self._timer: Any = None
        self._path: tuple[str, ...] = ()  # the run's path (from open(), else the first event)
        self._final = ""  # the kind of the run's terminal event, once seen
        self._calls: dict[tuple[str, str], str] = {}  # (label, call id) -> name, while streaming
        self._usage = UsageTotals()  # the sum of the Usage events seen so far
        self.messages = 0  # batches sent: for tests and benchmarks

    # -- sink protocol ----------------------------------------------------------

    def open(self, run: Run) -> None:
        self.run = run
        self._show(run.path)

    def _show(self, path: tuple[str, ...]) -> None:
        self._path = path
        self.transcript.begin(path)
        self.view = RunView(
            key=uuid.uuid4().hex,
            title="/".join(path),
            started=time.time(),
            layout=_shared_layout(),
        )
        self.view.on_msg(self._from_view)
        _display(self.view)

    def send(self, event: Event) -> None:
        if self.view is None:  # no open(): replay(), say; the view appears with the first event
            self._show(event.path)
        if event.terminal and event.path == self._path:
            self._final = event.kind
        self.transcript.add(event)
        if self.fmt == "events":
            self._lines.append(_event_line(event))
        if self._add_item(event):
            if isinstance(event, Ask | Answer):
                self._flush_now()  # a question waits for no batch, nor does its answer
            else:
                self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()
        status = self.run.status if self.run is not None else self._final or "done"
        if self.view is not None:
            with self.view.hold_sync():  # one state update, not three
                self.view.ended = time.time()
                self.view.items = self._sent
                self.view.status = status
        if self.fmt == "markdown":
            bundle = {
                "text/markdown": self.transcript.markdown(),
                "text/plain": self.transcript.plain(),
            }
        elif self.fmt == "text":
            bundle = {"text/plain": self.transcript.plain()}
        else:
            bundle = {"text/plain": "\n".join(self._lines)}
        _display(bundle, raw=True)

    # -- batching ---------------------------------------------------------------

    def _add_item(self, event: Event) -> bool:
        """Turn *event* into display items; False if it changed nothing to send.

        Items (``label`` is the run's path below this view's run, '' for its own):
        ``["text", label, text]``, ``["reasoning", label, text, message_id]``,
        ``["status", label, message]``, ``["custom", label, line, name]``,
        ``["call", label, call_id, name, argument_text]`` (a tool call whose
        arguments are streaming: items of one call add up), ``["tool", label, line,
        json]`` and, for a call that streamed, ``["tool", label, line, json,
        call_id]`` (it takes the streaming call's place), ``["step", label, name,
        step_id]``, ``["step_end", label, name, step_id]``, ``["state", label,
        line]``, ``["usage", "", line]`` (the run's usage so far: each replaces the
        last), ``["error", label, message, traceback]``, ``["cancelled", label,
        reason]``, ``["ask", label, ask_id, prompt, choices, default, call_id]``,
        ``["answer", label, ask_id, value, by]``.
        """
        root = self._path
        label = "/".join(event.path[len(root) :] if event.path[: len(root)] == root else event.path)
        pending = self._items[-1] if self._sent < len(self._items) else None
        item: Item
        if isinstance(event, TextChunk):
            if pending and pending[0] == "text" and pending[1] == label:
                pending[2] += event.text  # not sent yet: grow it
                return True
            item = ["text", label, event.text]
        elif isinstance(event, Reasoning):
            if (
                pending
                and pending[0] == "reasoning"
                and pending[1] == label
                and pending[3] == event.message_id
            ):
                pending[2] += event.text
                return True
            item = ["reasoning", label, event.text, event.message_id]
        elif isinstance(event, ToolCallStart):
            self._calls[label, event.call_id] = event.name
            item = ["call", label, event.call_id, event.name, ""]
        elif isinstance(event, ToolCallDelta):
            if pending and pending[0] == "call" and pending[1:3] == [label, event.call_id]:
                pending[4] += event.delta
                return True
            name = self._calls.setdefault((label, event.call_id), "")
            item = ["call", label, event.call_id, name, event.delta]
        elif isinstance(event, Status):
            if pending and pending[0] == "status" and pending[1] == label:
                pending[2] = event.message  # only the latest status matters
                return True
            item = ["status", label, event.message]
        elif isinstance(event, Custom):
            text = f"{event.name}: {brief(event.data)}"
            if (
                pending
                and pending[0] == "custom"
                and pending[1] == label
                and pending[3] == event.name
            ):
                pending[2] = text  # a burst of progress events is one update
                return True
            item = ["custom", label, text, event.name]
        elif isinstance(event, ToolCall):
            full = json.dumps(event.args, ensure_ascii=False, indent=1)
            item = ["tool", label, call_line(event, 40), full]
            if self._calls.pop((label, event.call_id), None) is not None:
                # Streamed: its unsent argument items are of no more use; the view puts
                # this line where the call's arguments were streaming, if it showed them.
                unsent = self._items[self._sent :]
                self._items[self._sent :] = [
                    i for i in unsent if not (i[0] == "call" and i[1:3] == [label, event.call_id])
                ]
                item.append(event.call_id)
        elif isinstance(event, ToolResult):
            full = json.dumps(event.result, ensure_ascii=False, indent=1)
            item = ["tool", label, result_line(event), full]
        elif isinstance(event, StepStart | StepEnd):
            kind = "step" if isinstance(event, StepStart) else "step_end"
            item = [kind, label, event.name, event.step_id]
        elif isinstance(event, StateSnapshot | StateDelta):
            line = state_line(event)
            if pending and pending[0] == "state" and pending[1] == label:
                pending[2] = line  # the latest state is what matters
                return True
            item = ["state", label, line]
        elif isinstance(event, Usage):
            self._usage.add(event)
            return self._usage_item(usage_line(self._usage.as_dict()))
        elif isinstance(event, Error):
            item = ["error", label, f"{event.type}: {event.message}", event.traceback]
        elif isinstance(event, Cancelled):
            item = ["cancelled", label, event.reason]
        elif isinstance(event, Ask):
            item = [
                "ask",
                label,
                event.ask_id,
                event.prompt,
                event.choices,
                event.default,
                event.call_id,
            ]
        elif isinstance(event, Answer):
            item = ["answer", label, event.ask_id, event.value, event.by]
        else:
            item = []
        if item:
            self._items.append(item)
        if isinstance(event, Done | Error | Cancelled) and not label and event.usage:
            # The run's own totals, exact, replace the sum kept here.
            return self._usage_item(usage_line(event.usage)) or bool(item)
        return bool(item)

    def _usage_item(self, line: str) -> bool:
        """The usage so far, as the last item; an unsent one before it is of no more use."""
        if not line:
            return False
        unsent = self._items[self._sent :]
        if any(item[0] == "usage" for item in unsent):
            self._items[self._sent :] = [item for item in unsent if item[0] != "usage"]
        self._items.append(["usage", "", line])
        return True

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        wait = self.interval - (time.monotonic() - self._last_flush)
        if wait <= 0:
            self._flush()  # leading edge: the first item goes out at once
            return
        import asyncio

        self._timer = asyncio.get_running_loop().call_later(wait, self._timed_flush)

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush()

    def _timed_flush(self) -> None:
        self._timer = None
        self._flush()

    def _flush(self) -> None:
        if self.view is None or self._sent >= len(self._items):
            return
        self.view.send({"t": "items", "offset": self._sent, "items": self._items[self._sent :]})
        self.messages += 1
        self._sent = len(self._items)
        self._last_flush = time.monotonic()

    # -- messages from the view -------------------------------------------------

    def _from_view(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        if content.get("t") == "ping" and self.view is not None:
            self.view.send({"t": "pong"})  # the view asks whether this kernel is still there
        elif content.get("t") == "stop" and self.run is not None:
            self.run.cancel("stopped from the notebook")
        elif content.get("t") == "answer" and self.view is not None:
            self._answer(content.get("ask_id"), content.get("value"))
        elif content.get("t") == "sync" and self.view is not None:
            have = content.get("have")
            if isinstance(have, int) and 0 <= have < self._sent:
                self.view.send(
                    {"t": "items", "offset": have, "items": self._items[have : self._sent]}
                )

    def _answer(self, ask_id: object, value: object) -> None:
        """Answer the run's question *ask_id* (its own or a sub-run's) as the view asks;
        a refusal goes back to the view, which shows it by the question."""
        try:
            if self.run is None:
                raise InvalidAnswer("this view shows no run it can answer for", "unknown")
            self.run.answer(ask_id, value, by="cell")  # type: ignore[arg-type]  # checked there
        except InvalidAnswer as exc:
            shown = ask_id if isinstance(ask_id, str) else ""
            self.view.send({"t": "refused", "ask_id": shown, "message": str(exc)})


def _person_can_answer() -> bool:
    """Whether the cell running now came from a front end a person answers in.

    A Jupyter front end's execute requests allow input (``allow_stdin``); those of
    headless executors (nbclient, papermill, nbval) do not. Outside a kernel, no one
    can answer in a cell.
    """
    if not _in_kernel():
        return False
    from IPython import get_ipython

    get_parent = getattr(get_ipython().kernel, "get_parent", None)  # ipykernel >= 6
    if get_parent is None:
        return True
    content = (get_parent("shell") or {}).get("content") or {}
    return bool(content.get("allow_stdin", True))


def _display(obj: object, **kwargs: Any) -> None:
    from IPython.display import display

    display(obj, **kwargs)  # type: ignore[no-untyped-call]


def _event_line(event: Event) -> str:
    # No ids or times (and not the random call_id or ask_id): the same run reads the same.
    fields = {k: v for k, v in event.payload().items() if k not in ("call_id", "ask_id")}
    payload = json.dumps(fields, ensure_ascii=False, sort_keys=True)
    return f"{'/'.join(event.path)} {event.kind} {payload}"


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


_hinted = False


def notebook_sink(
    fmt: str = "markdown", *, error_in_cell: bool = False
) -> NotebookSink | ConsoleSink:
    """A NotebookSink in a Jupyter kernel with widgets, else a ConsoleSink (and a hint)."""
    global _hinted
    if _in_kernel():
        try:
            _widget_base()
        except ImportError:
            pass
        else:
            return NotebookSink(fmt=fmt, error_in_cell=error_in_cell)
    if not _hinted:
        _hinted = True
        print(_INSTALL_HINT)
    return ConsoleSink()


async def show(
    agent: Callable[..., Any] | str,
    /,
    *args: Any,
    fmt: str = "markdown",
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run *agent* and show it live in the current cell; return its value.

    ``await agentnb.notebook.show(poet, "the sea")``
    """
    __tracebackhide__ = True
    return await _run(agent, *args, sink=notebook_sink(fmt), name=name, **kwargs)


def start_in_cell(
    agent: Callable[..., Any] | str,
    /,
    *args: Any,
    fmt: str = "markdown",
    name: str | None = None,
    **kwargs: Any,
) -> Run:
    """Start *agent* in the background, streaming into the current cell; return the Run."""
    return start(agent, *args, sink=notebook_sink(fmt), name=name, **kwargs)
