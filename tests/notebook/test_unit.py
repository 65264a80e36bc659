"""The notebook front's pure parts: the final transcript and its escaping, the cell
rewriting and the magics' arguments, and the magics in IPython's own test shell
(a terminal IPython: no kernel, no running event loop)."""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import gc
import html
import re
import string
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.inputtransformer2 import TransformerManager
from IPython.core.interactiveshell import InteractiveShell

import agentnb
from agentnb import Status, ToolCall, ToolResult
from agentnb._format import visible_controls
from agentnb.demo import flaky, poet, researcher
from agentnb.notebook import Transcript, escape_markdown, unload_ipython_extension
from agentnb.notebook._magics import _parse, _raw_input, _takes_input, run_magic, transform_cell
from agentnb.notebook._markdown import escape_markdown_inline
from agentnb.testing import capture_events
from harness.wait import eventually
from tests import hostile

# -- the final transcript ----------------------------------------------------------


def transcript_of(
    agent: Callable[..., Any], text: str, *, error_elsewhere: bool = False, **kwargs: Any
) -> Transcript:
    transcript = Transcript(error_elsewhere=error_elsewhere)
    # flaky raises: its Error event is in the transcript
    with capture_events() as events, contextlib.suppress(RuntimeError):
        agentnb.run_sync(agent, text, **kwargs)
    for event in events:
        transcript.add(event)
    return transcript


async def says(text: str) -> None:
    agentnb.emit(text)


def test_plain_text_is_the_agents_text_exactly() -> None:
    raw = "<script>alert(1)</script> & <b>x</b> `y` *z*\n# not a heading in plain"
    transcript = transcript_of(says, raw)
    assert transcript.plain() == raw
    assert transcript.text() == raw


def test_the_transcript_is_the_same_for_two_runs_of_the_same_input() -> None:
    one = transcript_of(researcher, "why is the sea salty?", speed=0)
    two = transcript_of(researcher, "why is the sea salty?", speed=0)
    assert one.markdown() == two.markdown()  # no run ids, times or call ids
    assert one.plain() == two.plain()


def test_a_child_runs_text_is_set_apart_with_its_name() -> None:
    transcript = transcript_of(researcher, "why is the sea salty?", speed=0)
    markdown, plain = transcript.markdown(), transcript.plain()
    assert "> <strong>summarizer:</strong>\\\n> In short&#58; " in markdown
    assert "\n[summarizer] In short: " in plain
    assert transcript.text().startswith("\n\nAnswer: why is the sea salty?")
    last = transcript.text().strip().split("\n")[-1]
    assert markdown.removesuffix(CLOSE).rstrip("\n").endswith(escape_markdown(last))


OPEN, CLOSE = '<div class="mathjax_ignore">\n\n', "\n\n</div>"


def test_tools_errors_and_html_in_them_stay_inert() -> None:
    async def tooling(text: str) -> None:
        agentnb.emit(Status("not in the transcript"))
        call = ToolCall("run", {"code": "a `b` <i>c</i>"})
        agentnb.emit(call)
        agentnb.emit(ToolResult("run", "<script>x</script>", call_id=call.call_id))
        raise ValueError("<b>bad</b> input")

    transcript = Transcript()
    with capture_events() as events, pytest.raises(ValueError, match="bad"):
        agentnb.run_sync(tooling, "")
    for event in events:
        transcript.add(event)
    markdown = transcript.markdown()
    assert markdown.startswith(OPEN)
    assert markdown.endswith(CLOSE)
    # Each item is a paragraph of its own; every character of the agent's is a
    # character reference, the markup is the transcript's own.
    assert [p.strip() for p in markdown[len(OPEN) : -len(CLOSE)].split("\n\n")] == [
        "<code>→ run&#40;code&#61;a &#96;b&#96; &#60;i&#62;c&#60;&#47;i&#62;&#41;</code>",
        "<code>← run&#58; &#60;script&#62;x&#60;&#47;script&#62;</code>",
        "<strong>ValueError</strong>: <code>&#60;b&#62;bad&#60;&#47;b&#62; input</code>",
    ]
    assert "not in the transcript" not in markdown
    assert [line for line in transcript.plain().split("\n") if line] == [
        "→ run(code=a `b` <i>c</i>)",
        "← run: <script>x</script>",
        "ValueError: <b>bad</b> input",
    ]


def test_a_failed_run_ends_with_its_error() -> None:
    transcript = transcript_of(flaky, "please fail", speed=0)
    message = escape_markdown("flaky failed as asked (input: 'please fail')")
    assert transcript.markdown().endswith(
        f"\n\n<strong>RuntimeError</strong>: <code>{message}</code>{CLOSE}"
    )
    message = "flaky failed as asked (input: 'please fail')"
    assert transcript.plain().rstrip("\n").endswith(f"\nRuntimeError: {message}")


def test_an_error_the_cell_shows_is_left_out_of_the_transcript() -> None:
    transcript = transcript_of(flaky, "please fail", speed=0, error_elsewhere=True)
    assert "RuntimeError" not in transcript.markdown()
    assert "RuntimeError" not in transcript.plain()
    assert "Working on" in transcript.plain()  # the rest of the run is there


async def child_fails(_text: str) -> None:
    agentnb.emit("parent text")
    await agentnb.run(flaky, "please fail", speed=0)


def test_a_sub_runs_error_stays_when_the_cell_shows_the_runs_own() -> None:
    transcript = transcript_of(child_fails, "x", error_elsewhere=True)
    # The sub-run's error is the run's text; the root's (the same error, raised on) goes.
    assert transcript.plain().count("RuntimeError") == 1
    assert "[flaky] RuntimeError" in transcript.plain()


async def slow_child(_text: str) -> None:
    agentnb.emit("waiting")
    await asyncio.sleep(3600)


async def waits_for_children(text: str) -> None:
    agentnb.emit("started")
    await asyncio.gather(agentnb.run(slow_child, text), agentnb.run(slow_child, text, name="two"))


async def test_a_cancelled_run_says_cancelled_once() -> None:
    transcript = Transcript()
    with capture_events() as events:
        run = agentnb.start(waits_for_children, "x")
        await eventually(lambda: events.kinds().count("text") == 3, what="both sub-runs began")
        run.cancel("stopped from the notebook")
        with contextlib.suppress(agentnb.RunCancelled):
            await run.wait()
    kinds = [(e.path, e.kind) for e in events]
    assert sum(kind == "cancelled" for _, kind in kinds) == 3  # the events keep every end
    for event in events:
        transcript.add(event)
    assert transcript.plain().count("cancelled") == 1
    assert transcript.plain().endswith("cancelled: stopped from the notebook")
    assert transcript.markdown().count("cancelled") == 1


def test_plain_text_shows_line_endings_as_lf_and_controls_as_pictures() -> None:
    transcript = transcript_of(says, "a\rb\r\nc\x1b[31md\x00")
    assert transcript.plain() == "a\nb\nc\u241b[31md\u2400"


# The characters Markdown, HTML or MathJax may act on, as the escaped form may hold them:
# character references, and the hard breaks (a backslash ending a line) it makes itself.
_REFERENCE = re.compile(r"&#[0-9]+;")


@pytest.mark.parametrize("text", hostile.payloads(60, 11))
def test_escaped_markdown_holds_no_character_markdown_acts_on(text: str) -> None:
    escaped = escape_markdown(text)
    assert "\r" not in escaped
    for line in escaped.split("\n"):
        assert line[:1] not in (" ", "\t")  # indented, it could be code, where refs show as typed
        bare = _REFERENCE.sub("", line.removesuffix("\\"))
        assert not set(bare) & set(string.punctuation), (line, text)
        assert not line.removesuffix("\\").endswith((" ", "\t"))  # no break of its own


def _spaces(indent: re.Match[str]) -> str:
    return indent.group().replace("\t", "    ")


@pytest.mark.parametrize("text", hostile.payloads(60, 12))
def test_escaped_markdown_reads_back_as_the_text(text: str) -> None:
    # Decoding the references and the breaks gives the text back: its lines, each
    # line's characters (indentation as no-break spaces), blank lines between paragraphs.
    decoded = html.unescape(escape_markdown(text).replace("\\\n", "\n").replace("\n\n", "\n"))
    lines = [line for line in visible_controls(text).split("\n") if line.strip(" \t")]
    expected = [re.sub(r"^[ \t]+", _spaces, line) for line in lines]
    assert decoded.replace("\xa0", " ").split("\n") == (expected or [""])


def test_escaping_is_the_same_for_one_line() -> None:
    assert escape_markdown_inline("a\r\n<b>`c`\rd") == "a &#60;b&#62;&#96;c&#96; d"


# -- rewriting cells into top-level awaits ------------------------------------------


def ipython(cell: str, *, with_agentnb: bool = True) -> str:
    """What IPython makes of a cell, with or without agentnb's input transformer."""
    manager = TransformerManager()  # type: ignore[no-untyped-call]
    if with_agentnb:
        manager.cleanup_transforms.append(transform_cell)
    return manager.transform_cell(cell)


def awaited_call(code: str) -> tuple[Any, ...]:
    """The literal arguments of the one top-level ``await ....run_magic(...)`` in *code*."""
    tree = ast.parse(code)
    awaits = [n for n in ast.walk(tree) if isinstance(n, ast.Await)]
    assert len(awaits) == 1, code
    call = awaits[0].value
    assert isinstance(call, ast.Call)
    assert isinstance(call.func, ast.Attribute)
    assert call.func.attr == "run_magic"
    line, body = (ast.literal_eval(a) for a in call.args[:2])
    assert ast.unparse(call.args[2]) == "get_ipython()"
    return line, body


@pytest.mark.parametrize(
    ("cell", "line", "body"),
    [
        ("%%agent poet\nthe sea", "poet", "the sea\n"),
        ('%%agent\tpoet -b\nthe \'sea\'\n"""x\n', "poet -b", 'the \'sea\'\n"""x\n'),
        ("%%agent poet\n", "poet", ""),
        ("%agent poet the sea", "poet the sea", None),
        ("%agent researcher why is the sea salty?", "researcher why is the sea salty?", None),
        ("%agent --list", "--list", None),
        ("\n\n%agent poet x", "poet x", None),
    ],
)
def test_agent_cells_become_one_top_level_await(cell: str, line: str, body: str | None) -> None:
    code = ipython(cell)
    assert awaited_call(code) == (line, body)
    compile(code, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_agent_lines_among_other_code_are_awaited_too() -> None:
    # IPython's own transformer finds the magic lines; each becomes an await, in place.
    cell = "x = 1\n%agent poet the sea\ny = 2"
    code = ipython(cell)
    assert awaited_call(code) == ("poet the sea", None)
    assert code.splitlines()[0] == "x = 1"
    assert code.splitlines()[2] == "y = 2"
    compile(code, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


@pytest.mark.parametrize(
    "cell",
    [
        "r = %agent poet the sea",
        "for topic in ['sea', 'wind']:\n    %agent poet the sea",
        "if True:\n    %agent poet the sea\nelse:\n    pass",
    ],
)
def test_agent_lines_in_statements_are_awaited(cell: str) -> None:
    code = ipython(cell)
    assert awaited_call(code) == ("poet the sea", None)
    compile(code, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_an_agent_line_inside_a_function_is_left_to_the_magic() -> None:
    # await is not allowed there: the registered magic says what to do instead.
    cell = "def f():\n    %agent poet the sea\n"
    assert ipython(cell) == ipython(cell, with_agentnb=False)


def test_a_cell_of_only_agent_lines_and_comments_is_awaited() -> None:
    code = ipython("# two runs\n%agent poet the sea\n\n%agent poet the wind")
    assert code.count("await ") == 2


@pytest.mark.parametrize("cell", ["%agent?", "%%agent?", "%agentx y", "%%agents x\ny", "%lsmagic"])
def test_other_cells_are_left_to_ipython(cell: str) -> None:
    assert ipython(cell) == ipython(cell, with_agentnb=False)


def test_agent_text_inside_a_string_is_left_alone() -> None:
    cell = 's = """\n%agent poet x\n"""'
    assert ipython(cell) == ipython(cell, with_agentnb=False)


# -- the magics' arguments ------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "cell", "expected"),
    [
        ("poet the sea", None, {"name": "poet", "input": ["the", "sea"], "background": False}),
        ("poet what's 'the sea'", None, {"name": "poet", "input": ["what's", "'the sea'"]}),
        ("-b -o x poet a", None, {"name": "poet", "input": ["a"], "background": True, "out": "x"}),
        ("poet -- -b", None, {"name": "poet", "input": ["-b"], "background": False}),
        ("poet the -b", None, {"name": "poet", "input": ["the", "-b"], "background": False}),
        ("--list", None, {"list": True, "name": None}),
        ("poet", "body", {"name": "poet", "input": [], "format": "markdown"}),
        ("poet --background -f text", "b", {"background": True, "format": "text"}),
        ("-o result poet --format events", "b", {"out": "result", "format": "events"}),
        ("--out=result poet", "b", {"out": "result", "name": "poet"}),
        ("researcher.sub -b", "b", {"name": "researcher.sub", "background": True}),
    ],
)
def test_arguments_parse(line: str, cell: str | None, expected: dict[str, Any]) -> None:
    args = _parse(line, cell)
    assert isinstance(args, argparse.Namespace)
    for key, value in expected.items():
        assert getattr(args, key) == value, key


@pytest.mark.parametrize(
    ("line", "cell", "says"),
    [
        ("-f nope poet", None, "invalid choice: 'nope'"),
        ("poet extra words", "body", "unexpected: 'extra words'"),
        ("--nope poet", "body", "unrecognized arguments: --nope"),
        ("-o", None, "expected one argument"),
        # Options after the name: refused, with the line as it should be.
        ("poet -o late the sea", None, r"Did you mean:\n    %agent -o late poet the sea\n"),
        ("poet -b", None, r"Did you mean:\n    %agent -b poet\n"),
        ("-f text poet --out=x -b a b", None, r"%agent -f text --out=x -b poet a b\n"),
    ],
)
def test_bad_arguments_raise_usage_error(line: str, cell: str | None, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        _parse(line, cell)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("poet the sea", "the sea"),
        ("-b poet  two  spaces ", "two  spaces"),
        ("poet -- -o is an option's name", "-o is an option's name"),
        ("poet --", ""),
        ("poet --not-a-separator", "--not-a-separator"),
    ],
)
def test_the_input_is_the_text_after_the_name_as_typed(line: str, text: str) -> None:
    assert _raw_input(line) == text


async def no_input() -> str:
    return "nothing asked"


async def optional_input(text: str = "") -> str:
    return text


def needs_two(a: str, b: str) -> str:
    return a + b


def test_an_agent_is_called_with_the_input_only_if_it_takes_one() -> None:
    assert _takes_input(poet)
    assert _takes_input(optional_input)
    assert not _takes_input(no_input)
    assert _takes_input(needs_two)  # the call itself says what is missing
    assert _takes_input(print)


# -- the magics in a terminal IPython (IPython's test shell) --------------------------


def undo_extension(ip: InteractiveShell) -> None:
    """Undo ``%load_ext agentnb`` (through agentnb.notebook: see test_unload_ext_...)."""
    unload_ipython_extension(ip)
    manager = ip.extension_manager
    assert manager is not None
    manager.loaded.discard("agentnb")


@pytest.fixture(scope="module")
def shell() -> Iterator[InteractiveShell]:
    from IPython.testing.globalipapp import get_ipython

    ip = get_ipython()  # type: ignore[no-untyped-call]
    ip.run_line_magic("load_ext", "agentnb")

    async def echo(text: str) -> str:
        return text

    ip.user_ns["echo"] = echo
    try:
        yield ip
    finally:
        # The nested runner the extension installs would change run_sync for the
        # rest of the test session.
        undo_extension(ip)
        for name in ("echo", "r", "r2", "r3"):
            ip.user_ns.pop(name, None)


def test_terminal_agent_line_runs_with_the_console_sink(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = shell.run_cell("%agent -o r echo hi there")  # type: ignore[no-untyped-call]
    assert result.success, result.error_in_exec
    assert shell.user_ns["r"] == "hi there"
    assert "done in" in capsys.readouterr().out  # the console sink's last line


def test_terminal_unknown_agent_is_a_usage_error(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    result = shell.run_cell("%agent nosuch x")  # type: ignore[no-untyped-call]
    assert isinstance(result.error_in_exec, UsageError)
    assert "no agent named 'nosuch'" in str(result.error_in_exec)


def test_the_registered_magic_works_without_a_running_loop(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    # In a terminal IPython no loop runs between cells: a %agent line in a block (an
    # await there too), or run_line_magic from code (the registered magic), must
    # still run the agent. Its input is the text as typed.
    errors: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = shell.run_cell("for topic in ['hi']:\n    %agent -o r2 echo hi")  # type: ignore[no-untyped-call]
        if not result.success:
            errors.append(repr(result.error_in_exec))
        del result
        try:
            shell.run_line_magic("agent", "-o r3 echo $topic")
            shell.run_line_magic("agent", "--list")
        except RuntimeError as exc:
            errors.append(repr(exc))
        gc.collect()
    assert errors == []
    assert shell.user_ns.get("r2") == "hi"
    assert shell.user_ns.get("r3") == "hi"  # run_line_magic expands, as IPython does
    assert "poet" in capsys.readouterr().out
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


async def test_run_magic_lists_and_runs_in_a_plain_event_loop(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTNB_DEMO_SPEED", "0")
    await run_magic("--list", None, shell)
    listing = capsys.readouterr().out
    assert "poet" in listing
    assert "researcher" in listing
    await run_magic("-o r3 -f text poet", "the sea", shell)
    assert shell.user_ns["r3"] == await agentnb.run(poet, "the sea", speed=0)


def test_unload_ext_undoes_the_extension(shell: InteractiveShell) -> None:
    from agentnb import _sync

    try:
        shell.run_line_magic("unload_ext", "agentnb")
        assert transform_cell not in shell.input_transformers_cleanup
        assert _sync._nested_runner is None  # run_sync in a running loop raises again
    finally:
        undo_extension(shell)
        shell.run_line_magic("load_ext", "agentnb")
