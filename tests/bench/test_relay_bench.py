"""The relay benchmark keeps working (it is run, not timed: no figure is asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness import ROOT

pytestmark = pytest.mark.bench


def test_the_relay_benchmark_runs_quick_and_prints_its_summary() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_relay.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("Summary", 1)[-1]
    for measure in (
        "relay, 1,000-chunk stream",
        "per event, text_chunk",
        "per event, reasoning",
        "per event, tool_call_delta",
        "per event, usage",
    ):
        assert measure in summary
    assert "not measured" not in summary
