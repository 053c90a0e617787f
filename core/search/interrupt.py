"""Ctrl-C (a notebook's "interrupt kernel") during the trials: stop cleanly, keep what ran.

Ray Tune, left alone, catches SIGINT, stops the trials, saves the experiment and then
returns as if the search had finished, so the driver would go on to export a student
of a search the user meant to stop. :class:`TrialsInterrupt` keeps Tune's graceful stop
(the experiment state is saved, so ``kdforge resume`` continues it) but remembers that
it happened, so :func:`~kdforge.search.tune.run_trials` can raise
:class:`SearchInterrupted` after Tune has released its trials.

How: for the duration of ``tuner.fit()`` Tune's own SIGINT handler is turned off
(``TUNE_DISABLE_SIGINT_HANDLER``) and ours is installed; it records the interrupt and
sends the process ``SIGUSR1``, which Tune always handles as "stop gracefully". A
second Ctrl-C raises ``KeyboardInterrupt`` at once, as Python's default would.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

__all__ = ["SearchInterrupted", "TrialsInterrupt"]

_TUNE_SIGINT_SWITCH = "TUNE_DISABLE_SIGINT_HANDLER"


class SearchInterrupted(KeyboardInterrupt):
    """The search was interrupted (Ctrl-C); its folder can be resumed.

    A ``KeyboardInterrupt``, so notebooks and scripts treat it as the interrupt it is.

    Attributes:
        search_dir: The search folder to resume.
    """

    def __init__(self, search_dir: Path) -> None:
        self.search_dir = search_dir
        super().__init__(
            f"search interrupted; finished trials are kept in {search_dir}. Continue it "
            f"with `kdforge resume {search_dir}` (or kdforge.resume(...) in Python)"
        )


class TrialsInterrupt:
    """Context manager around ``tuner.fit()``: a first SIGINT stops Tune gracefully.

    ``seen`` is True afterwards when SIGINT arrived. Outside the main thread (signals
    cannot be handled there) it does nothing and Tune keeps its own behaviour.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous: Any = None
        self._env: str | None = None
        self._active = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.seen:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.seen = True
        usr1 = getattr(signal, "SIGUSR1", None)
        if usr1 is None or signal.getsignal(usr1) in (signal.SIG_DFL, signal.SIG_IGN, None):
            raise KeyboardInterrupt  # Tune is not listening yet (or on Windows)
        os.kill(os.getpid(), usr1)  # Tune: stop the trials, save the state

    def __enter__(self) -> TrialsInterrupt:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._active = True
        self._env = os.environ.get(_TUNE_SIGINT_SWITCH)
        os.environ[_TUNE_SIGINT_SWITCH] = "1"
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._active:
            return
        signal.signal(signal.SIGINT, self._previous)
        if self._env is None:
            os.environ.pop(_TUNE_SIGINT_SWITCH, None)
        else:
            os.environ[_TUNE_SIGINT_SWITCH] = self._env
