"""Progress of kdforge's long phases: one bar per phase, with elapsed time and an estimate.

Every phase that can take more than a few seconds (training a teacher, computing its
outputs, the search's trials, the baseline, the export, latency, quantization) runs
inside :func:`phase`::

    from kdforge import progress

    with progress.phase("baseline", total=6, unit="run") as bar:
        for result in results:
            bar.advance(note=f"last {result:.4f}")  # one step done; the note is optional

    with progress.phase("export"):  # no total: elapsed time only
        export()

Where the output goes is decided once per phase, by :func:`mode`:

* ``rich``: a terminal or a Jupyter notebook gets a live `rich <https://rich.readthedocs.io>`_
  bar (name, bar, done/total, elapsed, estimated time left, the last note). Lines
  printed while it runs (``print``, kdforge's progress lines) appear above it, on the
  same stream (stdout). In a notebook rich renders the bar as a cell output.
* ``plain``: output that is not a terminal (a file, a pipe, CI, a test) gets plain
  lines instead, on the phase's ``emit`` (``print`` by default, so stdout like every
  other kdforge line): one when each tenth of ``total`` is done (so at regular steps,
  with elapsed time and estimate) and one when the phase ends, once the phase has run
  :data:`PLAIN_AFTER_S` seconds (a quick phase prints nothing). A phase whose progress
  is already printed line by line (the search prints one line per trial) or whose
  result line follows at once passes ``plain=False`` and prints nothing extra.
* ``off``: nothing (``kdforge --quiet``, or :func:`configure` ``quiet=True``).

The environment variable ``KDFORGE_PROGRESS`` (``rich``, ``plain`` or ``off``) forces
a mode; :func:`configure` sets it (and the console) for this process. Phases may nest:
the inner one adds a second bar under the outer one. A phase quicker than
:data:`PLAIN_AFTER_S` leaves no bar behind once it ends.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

__all__ = [
    "PLAIN_AFTER_S",
    "Bar",
    "Mode",
    "configure",
    "format_seconds",
    "mode",
    "phase",
    "quieted",
]

Mode = Literal["rich", "plain", "off"]

#: Plain lines start once a phase has run this long: a quick phase prints nothing.
PLAIN_AFTER_S = 2.0
_MODES = ("rich", "plain", "off")

_settings: dict[str, object] = {"mode": None, "console": None}
_live: dict[str, object] = {"progress": None, "depth": 0}


def configure(
    *, quiet: bool | None = None, mode: Mode | None = None, console: Console | None = None
) -> None:
    """Set how phases show their progress in this process.

    Args:
        quiet: True shows nothing (``mode="off"``); False goes back to automatic.
        mode: Force ``rich``, ``plain`` or ``off`` (None: decide per phase).
        console: The rich console bars are drawn on (default: stdout's).
    """
    if quiet is not None:
        _settings["mode"] = "off" if quiet else None
    if mode is not None:
        _settings["mode"] = mode
    if console is not None:
        _settings["console"] = console


@contextmanager
def quieted(quiet: bool) -> Iterator[None]:
    """Show nothing inside the block when ``quiet`` (``kdforge.distill(progress=False)``).

    The previous setting comes back afterwards, so one quiet call in a notebook does
    not silence the next.
    """
    saved = dict(_settings)
    if quiet:
        _settings["mode"] = "off"
    try:
        yield
    finally:
        _settings.clear()
        _settings.update(saved)


def _console() -> Console:
    console = _settings["console"]
    return console if isinstance(console, Console) else Console()


def mode() -> Mode:
    """The mode a phase started now would use (see the module docstring)."""
    chosen = _settings["mode"] or os.environ.get("KDFORGE_PROGRESS", "").strip().lower()
    if chosen in _MODES:
        return chosen  # type: ignore[return-value]
    console = _console()
    return "rich" if console.is_terminal or console.is_jupyter else "plain"


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s`` or ``1h02m``: short durations for progress lines."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class _Estimate(ProgressColumn):
    """Time left, from the mean time per step so far (steady for uneven steps)."""

    def render(self, task: Task) -> Text:
        if not task.total or not task.completed or task.elapsed is None:
            return Text("")
        if task.finished:
            return Text("")
        left = task.elapsed / task.completed * (task.total - task.completed)
        return Text(f"~{format_seconds(left)} left", style="progress.remaining")


class _Count(ProgressColumn):
    """``done/total``; nothing for a phase without steps."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("counted"):
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total or 0)}", style="progress.download")


class Bar:
    """The handle of a running phase: count steps done, attach a note.

    Attributes:
        name: The phase's name.
        total: Steps in the phase (None: unknown, elapsed time only).
        done: Steps done so far.
        note: The last note (shown after the bar, and in plain lines).
    """

    def __init__(
        self,
        name: str,
        total: int | None,
        unit: str,
        emit: Callable[[str], None] | None,
        show: Mode,
        plain: bool,
    ) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self.note = ""
        self._unit = unit
        self._emit = emit
        self._show = show
        self._plain = plain
        self._started = time.perf_counter()
        self._next_line = max(1, math.ceil(total / 10)) if total else 1
        self._task: TaskID | None = None

    @property
    def elapsed(self) -> float:
        """Seconds since the phase started."""
        return time.perf_counter() - self._started

    def _say(self, line: str) -> None:
        (self._emit or print)(line)

    def advance(self, steps: int = 1, note: str | None = None) -> None:
        """Count ``steps`` more done; ``note`` replaces the note shown beside the bar."""
        self.done += steps
        if note is not None:
            self.note = note
        progress = _live["progress"]
        if self._show == "rich" and isinstance(progress, Progress) and self._task is not None:
            progress.update(self._task, advance=steps, note=self.note)
        elif self._show == "plain" and self._plain and self.total:
            # A line every tenth of the phase (rounded up to whole steps): at regular
            # steps, whatever their speed.
            every = max(1, math.ceil(self.total / 10))
            if self.done >= self._next_line and self.done < self.total:
                self._next_line = (self.done // every + 1) * every
                if self.elapsed >= PLAIN_AFTER_S:
                    self._say(self._plain_line())

    def set_note(self, note: str) -> None:
        """Replace the note without counting a step."""
        self.advance(0, note)

    def _plain_line(self) -> str:
        elapsed = self.elapsed
        text = f"  {self.name}: {self.done}/{self.total}"
        text += f" {self._unit}" if self._unit else ""
        text += f" ({format_seconds(elapsed)}"
        if self.total and 0 < self.done < self.total:
            left = elapsed / self.done * (self.total - self.done)
            text += f", ~{format_seconds(left)} left"
        text += ")"
        return text + (f"  {self.note}" if self.note else "")

    def _finish(self) -> None:
        if self._show == "plain" and self._plain and self.elapsed >= PLAIN_AFTER_S:
            done = f" ({self.done}/{self.total} {self._unit})".replace(" )", ")")
            counted = done if self.total else ""
            note = f"  {self.note}" if self.note else ""
            self._say(f"  {self.name}: done in {format_seconds(self.elapsed)}{counted}{note}")


def _new_progress() -> Progress:
    return Progress(
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        _Count(),
        TimeElapsedColumn(),
        _Estimate(),
        TextColumn("{task.fields[note]}"),
        console=_console(),
    )


@contextmanager
def phase(
    name: str,
    total: int | None = None,
    *,
    unit: str = "",
    emit: Callable[[str], None] | None = None,
    plain: bool = True,
) -> Iterator[Bar]:
    """Show the progress of one phase while the ``with`` block runs.

    Args:
        name: What the phase does (``"teacher outputs"``, ``"baseline"``).
        total: Steps in the phase (None: the bar shows elapsed time only).
        unit: What a step is (``"epochs"``, ``"trials"``), for plain lines.
        emit: Where plain lines go (default ``print``).
        plain: False: print no plain lines (the caller prints its own per step).

    Yields:
        The :class:`Bar` to advance.
    """
    show = mode()
    bar = Bar(name, total, unit, emit, show, plain)
    if show != "rich":
        yield bar
        bar._finish()
        return
    outer = _live["progress"]
    progress = outer if isinstance(outer, Progress) else _new_progress()
    if outer is None:
        progress.start()
        _live["progress"] = progress
    _live["depth"] = int(_live["depth"]) + 1  # type: ignore[call-overload]
    bar._task = progress.add_task(name, total=total, note="", counted=total is not None)
    try:
        yield bar
    finally:
        task = bar._task
        quick = bar.elapsed < PLAIN_AFTER_S
        if total is None:  # an open-ended phase ends full, not as an empty bar
            progress.update(task, total=1, completed=1)
        progress.stop_task(task)
        _live["depth"] = int(_live["depth"]) - 1  # type: ignore[call-overload]
        if quick and outer is not None:
            progress.remove_task(task)  # a quick inner phase leaves no bar behind
        if outer is None:
            progress.live.transient = quick  # nor does a quick outer one
            progress.stop()
            _live["progress"] = None
