"""Without a kernel, or without the widget packages, the notebook calls fall back to the console."""

from __future__ import annotations

import ast

import pytest

import agentnb
from agentnb.demo import poet
from agentnb.notebook import _display, notebook_sink, show
from harness.kernel import Kernel


async def test_outside_a_kernel_show_streams_to_the_console_with_one_hint(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_display, "_hinted", False)
    expected = await agentnb.run(poet, "the sea", speed=0)
    value = await show(poet, "the sea", speed=0)
    assert value == expected
    out = capsys.readouterr().out
    assert out.count("pip install 'agentnb[notebook]'") == 1
    assert expected in out  # the poem streamed to the console, inline
    assert isinstance(notebook_sink(), agentnb.ConsoleSink)
    assert "agentnb[notebook]" not in capsys.readouterr().out  # the hint is said once


@pytest.mark.kernel
def test_in_a_kernel_without_anywidget_the_magic_streams_to_the_console() -> None:
    with Kernel({"AGENTNB_DEMO_SPEED": "0"}) as k:
        k.run_ok("import sys; sys.modules['anywidget'] = None  # as if it were not installed")
        k.run_ok("%load_ext agentnb\nimport agentnb.demo")
        cell = k.run_ok("%%agent poet\nthe sea")
        assert cell.widget_ids == []  # no live view
        assert "pip install 'agentnb[notebook]'" in cell.stream()
        expected = k.value("__import__('agentnb').run_sync('poet', 'the sea', speed=0)")
        assert ast.literal_eval(expected) in cell.stream()
