"""The benchmark scripts keep working (they are run, not timed: no figure is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_notebook_quick_runs_and_prints_its_summary() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_notebook.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("Summary", 1)[-1]
    assert "bytes on the wire" in summary
    assert "not measured" not in summary  # every figure was really measured


def test_bench_latency_quick_runs_and_prints_its_summary() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_latency.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("Summary", 1)[-1]
    assert "p50" in summary
    assert "p99" in summary


def test_bench_core_quick_runs_and_prints_its_summary() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_core.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    summary = done.stdout.split("Summary", 1)[-1]
    for measure in ("per event, burst", "per event, paced", "concurrent runs", "import agentnb"):
        assert measure in summary
