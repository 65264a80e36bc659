"""``%agent`` / ``%%agent``: run an agent in a notebook cell.

A cell that starts with ``%%agent`` (and a line that is just ``%agent ...``) is
rewritten, before IPython sees it, into a top-level ``await`` of the run. The
kernel then runs the cell as a coroutine on its own loop: queued cells (Run All)
wait their turn, ``kernel_info`` and widget messages (the stop button) are
handled while the agent streams, and an interrupt cancels the run. The magic
registered with IPython serves ``%agent?``, ``%lsmagic`` and the rare calls that
cannot be awaited (``get_ipython().run_cell_magic(...)``), through a nested loop.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.utils.process import arg_split  # type: ignore[attr-defined]

from .._exceptions import RunCancelled
from .._registry import get_agent, list_agents
from ._nested import run_nested

__all__ = ["AgentMagics", "load_ipython_extension", "run_magic", "transform_cell"]

_VALUE_OPTIONS = {"-o", "--out", "-f", "--format"}
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
        help="%%agent: the input text, as typed (%%%%agent: the cell body); options go before NAME",
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
        run_nested(run_magic(line, cell, self.shell))


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


def _parse(line: str, cell: str | None) -> argparse.Namespace:
    func = AgentMagics.agent
    if cell is None:
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
        if not key.startswith("_") and getattr(value, "__agentnb_name__", None) == key
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
    if callable(value):
        return value
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


async def run_magic(line: str, cell: str | None, shell: Any) -> None:
    """What ``%agent`` / ``%%agent`` do; the cell awaits this."""
    from . import _display

    __tracebackhide__ = True  # IPython shows the agent's frames, not these
    args = _parse(line, cell)
    if args.list:
        print(_listing(shell))
        return
    if not args.name:
        raise UsageError("which agent? Usage: %agent [options] NAME input...  (%agent --list)")
    fn = _find_agent(args.name, shell)
    # The input is the text as typed: the cell body without its final line break,
    # or the rest of the line after the name (spaces and quotes kept).
    text = cell.rstrip("\n") if cell is not None else _raw_input(line)
    namespace = getattr(shell, "user_ns", None)

    def store(value: Any) -> None:
        if args.out and namespace is not None:
            namespace[args.out] = value

    if args.background and _interactive(shell):
        run = _display.start_in_cell(fn, text, fmt=args.format, name=args.name.split(".")[-1])
        run.add_done_callback(lambda r: store(r.result) if r.status == "done" else None)
        return
    try:
        value = await _display.show(fn, text, fmt=args.format, name=args.name.split(".")[-1])
    except RunCancelled:
        return  # stopped with the button: the cell shows "cancelled"; Run All goes on
    except asyncio.CancelledError:
        # The kernel was interrupted: the run is cancelled and says so; stop here
        # the way an interrupted cell does.
        raise KeyboardInterrupt from None
    store(value)


def _interactive(shell: Any) -> bool:
    """Whether a person's front end runs this cell (JupyterLab, Notebook, VS Code).

    Headless executors (nbclient, papermill, nbval) say they take no input
    (``allow_stdin`` false), and they stop listening to a cell once it returns:
    a background run's transcript would reach the cell too late to be saved.
    There a ``--background`` cell runs to completion, so a notebook executed
    headless keeps the same final outputs as one run by hand.
    """
    kernel = getattr(shell, "kernel", None)
    return kernel is None or bool(getattr(kernel, "_allow_stdin", True))


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
            return line[words[i].end() :].strip()
    return ""


def _await_line(line: str, body: str | None) -> str:
    call = f"run_magic({line!r}, {body!r}, get_ipython())"
    return f"await __import__({_MODULE!r}, fromlist=['_']).{call}\n"


def _is_magic(line: str, name: str) -> bool:
    return line.startswith(name) and (len(line) == len(name) or line[len(name)].isspace())


def transform_cell(lines: list[str]) -> list[str]:
    """Input transformer: make ``%%agent`` cells and ``%agent``-only cells top-level awaits.

    A cell that mixes ``%agent`` lines with other code is left to IPython (the
    registered magic then runs each line through the nested loop): rewriting
    lines of arbitrary code could land inside a multi-line string.
    """
    if not lines:
        return lines
    first = lines[0]
    if _is_magic(first, "%%agent"):
        return [_await_line(first[7:].strip(), "".join(lines[1:]))]
    stripped = [text.rstrip("\n") for text in lines]
    if not all(
        _is_magic(s, "%agent") or not s.strip() or s.lstrip().startswith("#") for s in stripped
    ):
        return lines
    return [
        _await_line(s[6:].strip(), None) if _is_magic(s, "%agent") else s + "\n" for s in stripped
    ]


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics and the input transformer (idempotent)."""
    from .. import _sync

    ipython.register_magics(AgentMagics)
    transformers = ipython.input_transformers_cleanup
    if transform_cell not in transformers:
        transformers.append(transform_cell)
    _sync.set_nested_runner(run_nested)
    from .. import demo  # noqa: F401  (the offline demo agents: poet, researcher, ...)


def unload_ipython_extension(ipython: Any) -> None:
    from .. import _sync

    transformers = ipython.input_transformers_cleanup
    if transform_cell in transformers:
        transformers.remove(transform_cell)
    _sync.set_nested_runner(None)
