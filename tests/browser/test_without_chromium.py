"""Without Chromium, every browser test fails with one line saying what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]


def test_a_browser_test_without_chromium_says_what_to_install_in_one_line() -> None:
    env = {**os.environ, "AGENTNB_CHROMIUM": "/nonexistent/chromium"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header"]
    command += ["-o", "addopts=", "tests/browser/test_page.py", "-k", "favicon"]
    done = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    message = "the browser tests need Chromium at /nonexistent/chromium: apt-get install chromium"
    assert message in out
    assert "1 error" in out  # the fixture failed: one error, not a crash of the run
    assert "playwright" not in out.lower().replace("tests/browser", "")  # no Playwright traceback
    assert "Traceback" not in out
