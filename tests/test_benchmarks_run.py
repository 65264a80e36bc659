"""The benchmark scripts keep working (they are run, not timed: no figure is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "measures"),
    [
        ("bench_core.py", ["per event, burst", "per event, paced", "concurrent runs", "import"]),
        ("bench_notebook.py", ["bytes on the wire", "messages, burst", "rate limit"]),
        ("bench_latency.py", ["p50", "p99"]),
        ("bench_server.py", ["events/s, one stream", "p99 latency", "RSS per open stream"]),
    ],
)
def test_a_benchmark_runs_quick_and_prints_its_summary(script: str, measures: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("Summary", 1)[-1]
    for measure in measures:
        assert measure in summary
    assert "not measured" not in summary  # every figure was really measured
