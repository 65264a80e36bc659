"""The benchmark scripts keep working (they are run, not timed: no figure is asserted)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness import ROOT

pytestmark = pytest.mark.bench


@pytest.mark.parametrize(
    ("script", "measures"),
    [
        ("bench_core.py", ["per event, burst", "per event, paced", "concurrent runs", "import"]),
        pytest.param(
            "bench_notebook.py",
            ["bytes on the wire", "messages, burst", "rate limit"],
            marks=pytest.mark.kernel,
        ),
        pytest.param(
            "bench_latency.py", ["p50", "p99"], marks=[pytest.mark.kernel, pytest.mark.browser]
        ),
        ("bench_server.py", ["events/s, one stream", "p99 latency", "RSS per open stream"]),
        ("bench_protocols.py", ["events/s, AG-UI", "events/s, AI SDK"]),
        (
            "bench_redis.py",
            [
                "events/s, store vs pipelined XADD",
                "emit to client p99, 1,000/s",
                "emit to client p99 via server B",
                "agent's events/s, store vs in memory",
                "Redis memory per frame",
            ],
        ),
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
