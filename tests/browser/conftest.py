"""The browser tests' fixtures: one Chromium per module, the quickstart notebook."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from harness.browser import Browser, chromium, missing
from tests.browser.pages import QUICKSTART


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    problem = missing()
    if problem is not None:  # say what to install, in one line (not Playwright's error)
        pytest.fail(problem, pytrace=False)
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def quickstart() -> Any:
    return nbformat.read(QUICKSTART, as_version=4)  # type: ignore[no-untyped-call]
