"""The web fronts' public surfaces (``agentnb.server``, ``agentnb.client``) and their extras."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import agentnb
from tests.core.test_public_api import _isort_key

FRONTS = ("agentnb.server", "agentnb.client")


@pytest.mark.parametrize("name", FRONTS)
def test_all_is_sorted_and_every_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    names = list(module.__all__)
    assert names == sorted(names, key=_isort_key)
    assert [n for n in names if not hasattr(module, n)] == []


@pytest.mark.parametrize("name", [*FRONTS, "agentnb.notebook"])
def test_the_front_is_an_attribute_of_the_package_after_a_bare_import(name: str) -> None:
    # In a fresh interpreter: here the fronts are imported already, and a submodule
    # import sets the attribute itself (agentnb.__getattr__ would not be asked).
    attr = name.split(".")[1]
    code = (
        "import sys, agentnb\n"
        f"assert {name!r} not in sys.modules\n"
        f"front = agentnb.{attr}\n"
        "print(front.__name__, sorted(front.__all__)[:2])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    module = importlib.import_module(name)
    assert done.stdout.strip() == f"{name} {sorted(module.__all__)[:2]}"


def test_client_exceptions_are_agentnb_errors_under_their_public_name() -> None:
    from agentnb import client

    for cls in (client.ServerError, client.ConnectionLost, client.RemoteAgentError):
        assert issubclass(cls, agentnb.AgentnbError)
        assert cls.__module__ == "agentnb.client"
        assert cls.__doc__
    assert issubclass(client.ConnectionLost, OSError)


@pytest.mark.parametrize(
    ("front", "missing", "extra"),
    [
        ("agentnb.server", "fastapi", "server"),
        ("agentnb.server", "sse_starlette", "server"),
        ("agentnb.client", "httpx_sse", "client"),
    ],
)
def test_a_missing_extra_names_what_to_install(front: str, missing: str, extra: str) -> None:
    code = (
        "import sys\n"
        f"sys.modules[{missing!r}] = None  # as if it were not installed\n"
        f"import {front}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"ImportError: {front} needs the {extra} extra ({missing} is missing): "
        f"pip install 'agentnb[{extra}]'"
    )


def test_serve_without_the_server_extra_says_what_to_install() -> None:
    code = (
        "import sys\nsys.modules['uvicorn'] = None\n"
        "from agentnb._cli import main\nsys.exit(main(['serve']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2
    assert "pip install 'agentnb[server]'" in done.stderr


def test_serve_help_lists_its_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentnb", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for option in ("--host", "--port", "--app", "127.0.0.1"):
        assert option in done.stdout
