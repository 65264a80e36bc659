"""``%agent`` / ``%%agent``: run an agent in a notebook cell.

A cell that starts with ``%%agent``, and every ``%agent`` line of any other cell,
is rewritten, before IPython runs it, into a top-level ``await`` of the run. The
kernel then runs the cell as a coroutine on its own loop: queued cells (Run All)
wait their turn, ``kernel_info`` and widget messages (the stop button) are
handled while the agent streams, and an interrupt cancels the run. No loop is
ever nested and nothing is patched. The magic registered with IPython serves
``%agent?``, ``%lsmagic`` and the calls that cannot be awaited (a ``%agent``
inside a function, ``run_line_magic``): there it runs ``--list`` and ``-b``, and
says what to do for the rest.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import inspect
import re
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.utils.process import arg_split  # type: ignore[attr-defined]

from .._adapt import is_framework_agent
from .._exceptions import RunCancelled
from .._registry import get_agent, list_agents
from .._run import run as run_agent

__all__ = ["AgentMagics", "load_ipython_extension", "run_background", "run_magic", "transform_cell"]

_VALUE_OPTIONS = {"-o", "--out", "-f", "--format"}
_FLAG_OPTIONS = {"-b", "--background", "--list", "-h", "--help"}
_FORMATS = ("markdown", "text", "events")
_MODULE = __name__


@magics_class
class AgentMagics(Magics):
    """The ``%agent`` line magic and ``%%agent`` cell magic."""

    @magic_arguments()
    @argument(
        "-b",
        "--background",
        action="store_true",
        help="return at once; the run keeps streaming into this cell (several at a time). "
        "In headless execution (nbclient, papermill, nbval) the cell waits for the run instead",
    )
    @argument("-o", "--out", metavar="VAR", help="store the agent's result in the variable VAR")
    @argument(
        "-f",
        "--format",
        choices=_FORMATS,
        default="markdown",
        help="how the final transcript is left in the cell (default: markdown)",
    )
    @argument("--list", action="store_true", help="list the agents this notebook can run")
    @argument("name", nargs="?", help="the agent: a registered name or a name in the notebook")
    @argument(
        "input",
        nargs=argparse.REMAINDER,
        help="%%agent: the input text, as typed (%%%%agent: the cell body); options go before "
        "NAME (after it, `--` starts an input that begins with an option's name)",
    )
    @line_cell_magic
    def agent(self, line: str, cell: str | None = None) -> None:
        """Run an agent and watch it stream into the cell.

        ::

            %%agent poet
            Write four lines about the sea.

            %agent researcher why is the sea salty?
            %agent --background poet the wind
            %agent --list
        """
        # A cell that holds %agent became a top-level await of run_magic (see
        # transform_cell); the magic itself is called only where that could not be.
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a terminal IPython: no loop runs here, so none is nested
            asyncio.run(run_magic(line, cell, self.shell))
            return
        run_background(line, cell, self.shell)


def _reorder(tokens: list[str]) -> list[str]:
    """Options first, so ``%%agent poet --background`` parses like ``%%agent --background poet``."""
    options: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _VALUE_OPTIONS:
            options.extend(tokens[i : i + 2])
            i += 2
            continue
        (options if token.startswith("-") else rest).append(token)
        i += 1
    return options + rest


def _is_option(word: str) -> bool:
    name = word.split("=", 1)[0]
    return name in _VALUE_OPTIONS or name in _FLAG_OPTIONS or word[:2] in {"-o", "-f"}


def _misplaced(line: str) -> str | None:
    """``%agent NAME -o VAR input``: the line with the options put first, else None."""
    words = line.split()
    i = 0
    while i < len(words) and words[i].startswith("-"):  # the options in their place
        i += 2 if words[i] in _VALUE_OPTIONS else 1
    if i >= len(words) - 1:
        return None
    name, rest = words[i], words[i + 1 :]
    moved: list[str] = []
    while rest and _is_option(rest[0]):
        take = 2 if rest[0] in _VALUE_OPTIONS else 1
        moved += rest[:take]
        rest = rest[take:]
    if not moved:
        return None
    return " ".join(["%agent", *words[:i], *moved, name, *rest])


def _parse(line: str, cell: str | None) -> argparse.Namespace:
    func = AgentMagics.agent
    if cell is None:
        fixed = _misplaced(line)
        if fixed is not None:
            raise UsageError(
                f"%agent takes its options before the agent's name; everything after the name "
                f"is the input. Did you mean:\n    {fixed}\n(to send an input that starts "
                "with an option's name, put `--` after the agent's name)"
            )
        return parse_argstring(func, line)
    args = parse_argstring(func, " ".join(_quote(t) for t in _reorder(arg_split(line))))
    if args.input:
        raise UsageError(
            f"%%agent takes the agent's name and options on its line and the input in the cell "
            f"body; unexpected: {' '.join(args.input)!r}. Usage: %%agent [-b] [-o VAR] "
            "[-f markdown|text|events] NAME"
        )
    return args


def _quote(token: str) -> str:
    return token if token and not any(c.isspace() or c in "'\"" for c in token) else repr(token)


def _known_agents(shell: Any) -> dict[str, Callable[..., Any]]:
    found = {info.name: info.fn for info in list_agents()}
    namespace = getattr(shell, "user_ns", {}) or {}
    found.update(
        (key, value)
        for key, value in namespace.items()
        if not key.startswith("_")
        and (getattr(value, "__agentnb_name__", None) == key or is_framework_agent(value))
    )
    return found


def _find_agent(name: str, shell: Any) -> Callable[..., Any]:
    namespace = getattr(shell, "user_ns", {}) or {}
    value: Any = namespace
    try:
        head, *rest = name.split(".")
        value = namespace[head]
        for attr in rest:
            value = getattr(value, attr)
    except (KeyError, AttributeError):
        value = None
    if callable(value) or is_framework_agent(value):
        return value  # type: ignore[no-any-return,unused-ignore]
    try:
        return get_agent(name)
    except LookupError:
        known = ", ".join(sorted(_known_agents(shell))) or "none yet"
        raise UsageError(
            f"no agent named {name!r}. Known agents: {known}. Define one with "
            "@agentnb.agent, or name a function of this notebook."
        ) from None


def _listing(shell: Any) -> str:
    described = {info.name: info.description for info in list_agents()}
    rows = [
        f"{name:14} {described.get(name, '')}".rstrip() for name in sorted(_known_agents(shell))
    ]
    return "\n".join(rows) if rows else "no agents yet: define one with @agentnb.agent"


class _Magic:
    """A parsed ``%agent`` / ``%%agent``: the agent, its input, and what to do with the result."""

    def __init__(self, line: str, cell: str | None, shell: Any) -> None:
        self.args = args = _parse(line, cell)
        self.shell = shell
        self.fn: Callable[..., Any] | None = None
        self.text = ""
        if args.list:
            return
        if not args.name:
            raise UsageError("which agent? Usage: %agent [options] NAME input...  (%agent --list)")
        self.fn = _find_agent(args.name, shell)
        self.name = args.name.split(".")[-1]
        # The input is the text as typed: the cell body without its final line break,
        # or the rest of the line after the name (spaces and quotes kept).
        self.text = cell.rstrip("\n") if cell is not None else _raw_input(line)

    def store(self, value: Any) -> None:
        namespace = getattr(self.shell, "user_ns", None)
        if self.args.out and namespace is not None:
            namespace[self.args.out] = value

    def call_args(self) -> tuple[str, ...]:
        """The agent's arguments: the input, or none for an agent that takes none."""
        assert self.fn is not None
        if _takes_input(self.fn):
            return (self.text,)
        if self.text:
            raise UsageError(
                f"the agent {self.name!r} takes no input, but was given {self.text[:60]!r}: "
                f"run it as `%agent {self.args.name}`"
            )
        return ()

    def start(self) -> None:
        """Start the run in the background, streaming into this cell."""
        from . import _display

        assert self.fn is not None
        run = _display.start_in_cell(
            self.fn, *self.call_args(), fmt=self.args.format, name=self.name
        )
        run.add_done_callback(lambda r: self.store(r.result) if r.status == "done" else None)


def _takes_input(fn: Callable[..., Any]) -> bool:
    """Whether *fn* can be called with one positional argument (the magic's input)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C callable: assume it takes the input
        return True
    try:
        signature.bind("input")
    except TypeError:
        try:
            signature.bind()
        except TypeError:
            return True  # it needs other arguments: the call says which
        return False
    return True


def run_background(line: str, cell: str | None, shell: Any) -> None:
    """The magic called where it cannot be awaited: only ``--list`` and ``-b`` can run there."""
    magic = _Magic(line, cell, shell)
    if magic.args.list:
        print(_listing(shell))
        return
    if magic.args.background:
        magic.start()
        return
    if not _autoawait():
        raise UsageError(
            "%agent runs its cell as a top-level await, and %autoawait is off in this "
            "notebook: turn it on with `%autoawait on` (or use `%agent -b ...`, which "
            "streams in the background)"
        )
    raise UsageError(
        "%agent cannot wait for a run here (inside a function, or called through "
        "run_line_magic / run_cell_magic): use `await agentnb.notebook.show(agent, input)` "
        "in an async function, or `%agent -b ...` to run it in the background"
    )


async def run_magic(line: str, cell: str | None, shell: Any) -> None:
    """What ``%agent`` / ``%%agent`` do; the cell awaits this."""
    from . import _display

    __tracebackhide__ = True  # IPython shows the agent's frames, not these
    magic = _Magic(line, cell, shell)
    args = magic.args
    if args.list:
        print(_listing(shell))
        return
    assert magic.fn is not None
    if args.background and _interactive(shell):
        magic.start()
        return
    inputs = magic.call_args()
    # The cell shows the agent's error as its error output, so the transcript leaves it out.
    sink = _display.notebook_sink(args.format, error_in_cell=True)
    try:
        value = await run_agent(magic.fn, *inputs, sink=sink, name=magic.name)
    except RunCancelled:
        return  # stopped with the button: the cell shows "cancelled"; Run All goes on
    except asyncio.CancelledError:
        # The kernel was interrupted: the run is cancelled and says so; stop here
        # the way an interrupted cell does.
        raise KeyboardInterrupt from None
    except Exception as exc:
        _agent_traceback(exc, shell)
        raise
    magic.store(value)


# Frames of these are plumbing between the cell and the agent: agentnb, asyncio,
# threading's and contextlib's callers.
_PLUMBING = (
    str(Path(asyncio.__file__).resolve().parent),
    str(Path(threading.__file__).resolve()),
    str(Path(contextlib.__file__).resolve()),
    str(Path(__file__).resolve().parent.parent),
)
_DEMO = str(Path(__file__).resolve().parent.parent / "demo.py")  # agents, not plumbing


def _plumbing(tb: types.TracebackType) -> bool:
    filename = tb.tb_frame.f_code.co_filename
    return filename.startswith(_PLUMBING) and filename != _DEMO


def _agent_traceback(exc: BaseException, shell: Any) -> None:
    """Have IPython show *exc* from the agent's first frame on: no frame of agentnb's or the cell's.

    IPython's documented hook for this is an exception's ``_render_traceback_``;
    it is set on *exc* only, and renders with the shell's own traceback formatter.
    """
    tb = exc.__traceback__
    while tb is not None and _plumbing(tb):
        tb = tb.tb_next
    if tb is None or shell is None or not hasattr(shell, "InteractiveTB"):
        return  # raised in agentnb itself (a bad argument, say): its own message says it
    frames: list[types.TracebackType] = []
    while tb is not None:
        frames.append(tb)
        tb = tb.tb_next
    trimmed: types.TracebackType | None = None
    for frame in reversed(frames):
        trimmed = types.TracebackType(trimmed, frame.tb_frame, frame.tb_lasti, frame.tb_lineno)
    formatter = shell.InteractiveTB

    def render() -> list[str]:
        lines: list[str] = formatter.structured_traceback(type(exc), exc, trimmed, tb_offset=0)
        return lines

    with contextlib.suppress(AttributeError):  # a class with __slots__: IPython's own view
        exc._render_traceback_ = render  # type: ignore[attr-defined]


def _interactive(shell: Any) -> bool:
    """Whether a person's front end runs this cell (JupyterLab, Notebook, VS Code).

    Headless executors (nbclient, papermill, nbval) say they take no input
    (``allow_stdin`` false), and they stop listening to a cell once it returns:
    a background run's transcript would reach the cell too late to be saved.
    There a ``--background`` cell runs to completion, so a notebook executed
    headless keeps the same final outputs as one run by hand.
    """
    kernel = getattr(shell, "kernel", None)
    get_parent = getattr(kernel, "get_parent", None)  # ipykernel >= 6: the current request
    if get_parent is None:
        return True
    content = (get_parent("shell") or {}).get("content") or {}
    return bool(content.get("allow_stdin", True))


def _raw_input(line: str) -> str:
    """The text after the options and the agent's name, exactly as typed."""
    words = list(re.finditer(r"\S+", line))
    i = 0
    while i < len(words):
        word = words[i].group()
        if word in _VALUE_OPTIONS:
            i += 2
        elif word.startswith("-"):
            i += 1
        else:
            rest = line[words[i].end() :].strip()
            # `--` after the name: the input starts after it (and may start like an option)
            return rest[2:].strip() if rest == "--" or rest.startswith(("-- ", "--\t")) else rest
    return ""


_AWAIT = f"await __import__({_MODULE!r}, fromlist=['_']).run_magic"


def _await_line(line: str, body: str | None) -> str:
    return f"{_AWAIT}({line!r}, {body!r}, get_ipython())\n"


def _is_magic(line: str, name: str) -> bool:
    return line.startswith(name) and (len(line) == len(name) or line[len(name)].isspace())


def transform_cell(lines: list[str]) -> list[str]:
    """Input transformer: every ``%%agent`` cell and ``%agent`` line becomes a top-level await.

    A ``%%agent`` cell is one await of the run. In any other cell, IPython's own
    transformer says where its ``%agent`` lines are (not inside strings, say):
    each ``get_ipython().run_line_magic('agent', ...)`` it makes, outside a
    function or class, becomes an ``await`` of the same run. The input is the
    text as typed: no ``$name`` or ``{expression}`` expansion, which would mangle
    prompts that hold braces or dollars. The kernel then runs
    the cell as a coroutine on its own loop; nothing nests a loop. Left as they
    are (the registered magic then says what to do): a ``%agent`` inside a
    function body, and every cell when ``%autoawait`` is off.
    """
    if not lines or not _autoawait():
        return lines
    first = lines[0]
    if _is_magic(first, "%%agent"):
        return [_await_line(first[7:].strip(), "".join(lines[1:]))]
    source = "".join(lines)
    if "%agent" not in source:
        return lines
    code = _magic_finder().transform_cell(source)
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return lines  # IPython reports it as usual
    spans = [_span(call) for call in _magic_calls(tree)]
    if not spans:
        return lines
    rows = code.splitlines(keepends=True)
    for (row, start, end), line in sorted(spans, reverse=True):
        text = rows[row]
        rows[row] = f"{text[:start]}({_AWAIT}({line}, None, get_ipython())){text[end:]}"
    return rows


def _magic_finder() -> Any:
    """IPython's transformer, but for a line ending in ``?``: ``%agent ... why?`` is a question."""
    from IPython.core.inputtransformer2 import HelpEnd, TransformerManager

    manager = TransformerManager()
    manager.token_transformers = [t for t in manager.token_transformers if t is not HelpEnd]
    return manager


def _magic_calls(tree: ast.AST) -> list[ast.Call]:
    """The ``get_ipython().run_line_magic('agent', '...')`` calls that can be awaited."""
    found: list[ast.Call] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            return  # not at the top level: await is not allowed (or not run) there
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "run_line_magic"
            and isinstance(node.func.value, ast.Call)
            and isinstance(node.func.value.func, ast.Name)
            and node.func.value.func.id == "get_ipython"
            and len(node.args) == 2
            and all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args)
            and node.args[0].value == "agent"  # type: ignore[attr-defined]
            and node.lineno == node.end_lineno
        ):
            found.append(node)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _span(call: ast.Call) -> tuple[tuple[int, int, int], str]:
    """Where *call* is in its line (0-based row, start, end column) and its argument's repr."""
    assert call.end_col_offset is not None
    argument = repr(call.args[1].value)  # type: ignore[attr-defined]
    return (call.lineno - 1, call.col_offset, call.end_col_offset), argument


def _autoawait() -> bool:
    from IPython import get_ipython

    shell = get_ipython()
    return shell is None or bool(getattr(shell, "autoawait", True))


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the input transformer (idempotent).

    Also lets ``agentnb.run_sync`` work inside the kernel's running loop (through
    nest-asyncio2, applied only when such a call is made; see ``_nested``).
    Nothing else: the demo agents are there once ``agentnb.demo`` is imported.
    """
    from .. import _sync
    from ._nested import run_nested

    ipython.register_magics(AgentMagics)
    transformers = ipython.input_transformers_cleanup
    if transform_cell not in transformers:
        transformers.append(transform_cell)
    _sync.set_nested_runner(run_nested)


def unload_ipython_extension(ipython: Any) -> None:
    from .. import _sync

    transformers = ipython.input_transformers_cleanup
    if transform_cell in transformers:
        transformers.remove(transform_cell)
    _sync.set_nested_runner(None)
