"""Shared set-up for adapter tests: a scripted provider served over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.providers import Provider
from harness.web import serving


@pytest.fixture
def provider() -> Provider:
    return Provider()


@pytest.fixture
def base(provider: Provider) -> Iterator[str]:
    """The provider's base URL (``http://127.0.0.1:PORT``), served until the test ends."""
    with serving(provider.app) as url:
        yield url
