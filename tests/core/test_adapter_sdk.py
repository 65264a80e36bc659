"""A missing or too old SDK fails at use, saying what to install."""

from __future__ import annotations

import importlib.metadata

import pytest

from agentnb.adapters._sdk import require, require_version


def test_a_missing_sdk_names_the_extra_to_install() -> None:
    with pytest.raises(ImportError, match=r"pip install 'agentnb\[openai\]'") as caught:
        require("agentnb_no_such_sdk.types", "openai")
    assert "agentnb_no_such_sdk, which is not installed" in str(caught.value)


def test_an_installed_sdk_is_returned() -> None:
    assert require("json", "openai").dumps([1]) == "[1]"


def test_an_sdk_older_than_needed_says_which_version_is_needed() -> None:
    installed = importlib.metadata.version("pytest")
    with pytest.raises(ImportError) as caught:
        require_version("pytest", "999.1", "pydantic-ai", "running a pydantic-ai Agent")
    message = str(caught.value)
    assert f"running a pydantic-ai Agent needs pytest >= 999.1, but {installed} is installed" in (
        message
    )
    assert "pip install -U 'agentnb[pydantic-ai]'" in message
    require_version("pytest", "1.0", "pydantic-ai", "anything")  # new enough: no error
