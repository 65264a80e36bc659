"""The public surface: one sorted, complete ``__all__``; a cheap, side-effect-free import."""

from __future__ import annotations

import ast
import inspect
import json
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path

import agentnb

PACKAGE_DIR = Path(agentnb.__file__).parent
HEAVY = (
    "IPython",
    "ipywidgets",
    "fastapi",
    "starlette",
    "sse_starlette",
    "httpx",
    "httpx_sse",
    "uvicorn",
    # the SDKs the adapters read: recognised by their package name, never imported to look
    "openai",
    "anthropic",
    "httpx2",
    "litellm",
    "langchain_core",
    "langgraph",
    "pydantic_ai",
    "agents",
    "jsonschema",
)


def _isort_key(name: str) -> tuple[int, list[tuple[int, int | str]]]:
    """The order ruff's RUF022 (enabled in this project) gives ``__all__``.

    SCREAMING_SNAKE_CASE names first, then CamelCase, then the rest; a natural sort
    (digit runs compared as numbers) inside each group.
    """
    if len(name) > 1 and name.isupper():
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    parts = [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]
    return group, parts


def test_all_is_sorted() -> None:
    names = list(agentnb.__all__)
    assert names == sorted(names, key=_isort_key)


def test_all_sort_key_is_the_one_ruff_checks() -> None:
    # Guard the helper above: constants, then classes, then functions, each alphabetical.
    names = [
        "emit",
        "Run",
        "JSON",
        "aemit",
        "__version__",
        "AgentInfo",
        "RunStream",
        "MAX_2",
        "MAX_10",
    ]
    assert sorted(names, key=_isort_key) == [
        "JSON",
        "MAX_2",
        "MAX_10",
        "AgentInfo",
        "Run",
        "RunStream",
        "__version__",
        "aemit",
        "emit",
    ]


def test_all_has_no_duplicates_and_every_name_exists() -> None:
    names = agentnb.__all__
    assert len(names) == len(set(names))
    missing = [name for name in names if not hasattr(agentnb, name)]
    assert missing == []
    assert all(isinstance(name, str) for name in names)


def test_every_public_class_and_function_is_exported() -> None:
    exported = set(agentnb.__all__)
    unexported = [
        name
        for name, value in vars(agentnb).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").split(".")[0] == "agentnb"
        and name not in exported
    ]
    assert unexported == []


def test_no_other_public_names_leak_from_the_package() -> None:
    # Besides __all__, the package namespace only holds submodules and the __future__ flag.
    exported = set(agentnb.__all__)
    stray = [
        name
        for name, value in vars(agentnb).items()
        if not name.startswith("_")
        and name not in exported
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    ]
    assert stray == []


def test_exports_are_the_documented_api() -> None:
    expected = {
        "AgentInfo",
        "AgentnbError",
        "Cancelled",
        "ConsoleSink",
        "Custom",
        "Done",
        "Error",
        "Event",
        "InvalidEvent",
        "JSON",
        "JsonlRecorder",
        "LoopAlreadyRunning",
        "NoActiveRun",
        "Run",
        "RunCancelled",
        "RunClosed",
        "RunStream",
        "Sink",
        "SinkLike",
        "Status",
        "TextChunk",
        "ToolCall",
        "ToolResult",
        "UnknownAgent",
        "__version__",
        "aemit",
        "agent",
        "current_run",
        "emit",
        "get_agent",
        "list_agents",
        "read_events",
        "replay",
        "run",
        "run_sync",
        "start",
        "stream",
    }
    assert expected <= set(agentnb.__all__)


def test_exceptions_share_a_base_and_the_matching_builtin() -> None:
    assert issubclass(agentnb.NoActiveRun, agentnb.AgentnbError)
    assert issubclass(agentnb.NoActiveRun, LookupError)
    assert issubclass(agentnb.RunClosed, RuntimeError)
    assert issubclass(agentnb.InvalidEvent, TypeError)
    assert issubclass(agentnb.UnknownAgent, LookupError)
    assert issubclass(agentnb.LoopAlreadyRunning, RuntimeError)
    for name in agentnb.__all__:
        value = getattr(agentnb, name)
        if inspect.isclass(value) and issubclass(value, BaseException):
            assert issubclass(value, agentnb.AgentnbError), name
            assert value.__doc__, name


def test_version_is_a_string() -> None:
    assert isinstance(agentnb.__version__, str)
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", agentnb.__version__)


def _import_in_fresh_interpreter(tmp_path: Path) -> dict[str, list[str]]:
    # Stand-in packages with the heavy names: if importing agentnb imported any of them
    # (even behind a try/except ImportError), it would show up in sys.modules.
    for name in HEAVY:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("", encoding="utf-8")
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import agentnb\n"
        "new = sorted(set(sys.modules) - before)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "stdlib = sys.stdlib_module_names\n"
        "foreign = sorted(m for m in new if m.split('.')[0] not in stdlib"
        " and m.split('.')[0] != 'agentnb')\n"
        "print(json.dumps({'heavy': heavy, 'foreign': foreign, 'new': new}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    result: dict[str, list[str]] = json.loads(done.stdout)
    return result


def test_import_does_not_pull_in_jupyter_or_web_stacks(tmp_path: Path) -> None:
    result = _import_in_fresh_interpreter(tmp_path)
    assert "agentnb" in result["new"]  # the check really ran the import
    assert result["heavy"] == []
    assert result["foreign"] == []  # only the standard library


def test_import_has_no_side_effects_on_stdout() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import agentnb, agentnb.testing"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""


def _private_modules() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE_DIR.glob("_*.py")
        if not (p.name.startswith("__") and p.name.endswith("__.py"))
    )


def _declared_all(path: Path) -> list[str] | None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return list(ast.literal_eval(value))
    return None


def test_the_private_modules_are_found() -> None:
    names = [p.name for p in _private_modules()]
    assert "_events.py" in names
    assert "_run.py" in names
    assert "__init__.py" not in names


def test_every_private_module_declares_all() -> None:
    missing = [p.name for p in _private_modules() if _declared_all(p) is None]
    assert missing == []


def test_private_all_lists_exist_and_are_sorted() -> None:
    import importlib

    for path in _private_modules():
        declared = _declared_all(path)
        if declared is None:
            continue  # reported by test_every_private_module_declares_all
        module = importlib.import_module(f"agentnb.{path.stem}")
        assert [n for n in declared if not hasattr(module, n)] == [], path.name
        assert declared == sorted(declared, key=_isort_key), path.name


def test_the_package_reexports_every_private_all() -> None:
    import importlib

    exported = set(agentnb.__all__)
    for path in _private_modules():
        declared = _declared_all(path)
        if declared is None or path.stem in ("_cli",):
            continue
        module = importlib.import_module(f"agentnb.{path.stem}")
        for name in declared:
            assert name in exported, f"{path.name}: {name}"
            assert getattr(agentnb, name) is getattr(module, name)


def test_the_package_is_typed() -> None:
    assert (PACKAGE_DIR / "py.typed").is_file()


def test_run_cancelled_and_run_closed_pickle_whole() -> None:
    # They leave other processes (a Dask task, a multiprocessing worker stopped mid-run).
    cancelled = pickle.loads(pickle.dumps(agentnb.RunCancelled("r1", "stopped by a client")))
    assert (cancelled.run_id, cancelled.reason) == ("r1", "stopped by a client")
    assert str(cancelled) == "run r1 was cancelled: stopped by a client"
    closed = pickle.loads(pickle.dumps(agentnb.RunClosed("r2", ("a", "b"), "done")))
    assert (closed.run_id, closed.path, closed.status) == ("r2", ("a", "b"), "done")
    assert "run r2 (a/b) has already ended (done)" in str(closed)
