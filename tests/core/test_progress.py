"""Progress of long phases: rich bars in a terminal or notebook, plain lines elsewhere, --quiet."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from rich.console import Console

from kdforge import progress
from kdforge.cli import main


@pytest.fixture(autouse=True)
def _reset_progress(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("KDFORGE_PROGRESS", raising=False)
    saved = dict(progress._settings)
    yield
    progress._settings.update(saved)


def test_plain_lines_come_at_regular_steps_with_elapsed_and_estimate(monkeypatch) -> None:
    progress.configure(console=Console(file=io.StringIO()))  # not a terminal
    assert progress.mode() == "plain"
    lines: list[str] = []
    clock = iter(range(0, 1000, 2))  # every reading of the phase's clock is 2 s later
    monkeypatch.setattr(progress, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    with progress.phase("teacher training", total=15, unit="epochs", emit=lines.append) as bar:
        for epoch in range(1, 16):
            bar.advance(note=f"val_acc=0.{epoch:02d}")
    steps = [int(m.group(1)) for line in lines if (m := re.search(r": (\d+)/15 epochs", line))]
    assert steps == [2, 4, 6, 8, 10, 12, 14]  # every tenth, rounded up to whole epochs
    first = r"teacher training: 2/15 epochs \([\d.]+s, ~[\d.]+s left\)  val_acc=0\.02"
    assert re.search(first, lines[0])
    last = r"  teacher training: done in [\d.]+s \(15/15 epochs\)  val_acc=0\.15"
    assert re.fullmatch(last, lines[-1])


def test_plain_phase_without_steps_says_only_how_long_it_took(monkeypatch) -> None:
    progress.configure(mode="plain")
    monkeypatch.setattr(progress, "PLAIN_AFTER_S", 0.5)
    lines: list[str] = []
    with progress.phase("export", emit=lines.append):
        time.sleep(0.55)
    assert len(lines) == 1 and re.fullmatch(r"  export: done in 0\.\ds", lines[0])
    with progress.phase("quick", emit=lines.append):
        pass  # quicker than PLAIN_AFTER_S: nothing to say
    with progress.phase("search", total=3, emit=lines.append, plain=False) as bar:
        bar.advance(3)  # the caller prints its own line per step
    assert len(lines) == 1


def test_terminal_gets_a_rich_bar_with_count_elapsed_and_estimate(monkeypatch) -> None:
    monkeypatch.setattr(progress, "PLAIN_AFTER_S", 0.0)  # no phase counts as quick
    out = io.StringIO()
    progress.configure(console=Console(file=out, force_terminal=True, width=120))
    assert progress.mode() == "rich"
    with progress.phase("baseline", total=4, unit="runs") as outer:
        with progress.phase("latency") as inner:  # nested: a second bar
            inner.set_note("1 student")
        for _ in range(4):
            outer.advance(note="last 0.97")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "baseline" in text and "4/4" in text and "0:00:0" in text and "last 0.97" in text
    assert "latency" in text
    assert progress._live["progress"] is None  # the live display is closed


def test_a_notebook_gets_rich_output() -> None:
    progress.configure(console=Console(file=io.StringIO(), force_jupyter=True))
    assert progress.mode() == "rich"


def test_quiet_and_the_environment_switch(monkeypatch, capsys) -> None:
    progress.configure(console=Console(file=io.StringIO(), force_terminal=True))
    monkeypatch.setenv("KDFORGE_PROGRESS", "plain")
    assert progress.mode() == "plain"
    progress.configure(quiet=True)
    assert progress.mode() == "off"
    lines: list[str] = []
    with progress.phase("baseline", total=2, emit=lines.append) as bar:
        bar.advance(2)
    assert lines == [] and bar.done == 2
    progress.configure(quiet=False)
    assert main(["--quiet", "plugins"]) == 0
    assert progress.mode() == "off"  # the CLI switch reaches every phase


def test_format_seconds() -> None:
    assert [progress.format_seconds(s) for s in (3.21, 42, 185, 3720)] == [
        "3.2s",
        "42s",
        "3m05s",
        "1h02m",
    ]


def test_quieted_silences_a_block_and_restores_the_setting_after() -> None:
    from kdforge import progress

    progress.configure(mode="plain")
    try:
        with progress.quieted(True):
            assert progress.mode() == "off"
        assert progress.mode() == "plain"
        with progress.quieted(False):
            assert progress.mode() == "plain"
    finally:
        progress.configure(quiet=False)
