"""Refuse to resume from Ray Tune state files that kdforge did not see Tune write.

``kdforge resume`` hands ``SEARCH_DIR/tune`` to ``Tuner.restore``, which unpickles
``tuner.pkl``, the searcher state and the trials in the experiment state: a replaced
file would run its code. kdforge cannot sign what Tune writes, so it records the
SHA-256 of each state file right after Tune writes it (:class:`StateDigestRecorder`,
a Tune callback whose ``on_step_end`` runs just after Tune's experiment checkpoint, and
once more when the trials end) in ``SEARCH_DIR/tune-state.sha256.json``, and
:func:`check_state_digests` refuses, before Ray reads anything, a state file whose
digest kdforge never recorded. ``kdforge resume --trust-state`` is the opt-in for
folders the user vouches for.

State files are the files directly in ``tune/`` and every ``*.pkl`` below it. Trial
checkpoints are not: kdforge reads them with ``torch.load(weights_only=True)``.

When the search folder mirrors an object store (:mod:`kdforge.search.remote`), Tune
writes its state in a local staging folder and uploads it: the recorder hashes that
folder (and, once at the start and at the end, the few files Tune uploads directly,
such as ``tuner.pkl``), and uploads the record with kdforge's other files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ray.tune import Callback

from kdforge.errors import SearchError
from kdforge.search.remote import sync_search_dir
from kdforge.storage import download_tree, join, remote_of

__all__ = [
    "DIGEST_FILE",
    "TRUST_STATE_SWITCH",
    "StateDigestRecorder",
    "check_state_digests",
    "record_state_digests",
]

#: Where the digests live: beside ``tune/``, in the search folder.
DIGEST_FILE = "tune-state.sha256.json"

#: The command-line switch that skips the check.
TRUST_STATE_SWITCH = "--trust-state"

# Earlier versions of a file stay valid (Tune rewrites files in place); a bound keeps
# the record small over long searches.
_KEEP = 64


def _state_files(tune_dir: Path) -> list[Path]:
    if not tune_dir.is_dir():
        return []
    top = [p for p in tune_dir.iterdir() if p.is_file()]
    nested = [p for p in tune_dir.rglob("*.pkl") if p.is_file() and p.parent != tune_dir]
    return sorted(set(top) | set(nested))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load(search_dir: Path) -> dict[str, list[str]]:
    file = search_dir / DIGEST_FILE
    if not file.exists():
        return {}
    try:
        raw = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): [str(d) for d in v] for k, v in raw.items() if isinstance(v, list)}


def record_state_digests(
    tune_dir: Path, known: dict[str, list[str]] | None = None, source: Path | None = None
) -> None:
    """Add the current digest of every state file in ``tune_dir`` to the record.

    Args:
        tune_dir: ``SEARCH_DIR/tune``.
        known: The record as loaded (read from disk when None).
        source: Where the files are read (default ``tune_dir``; Tune's local staging
            folder when ``tune/`` is on an object store).
    """
    search_dir = tune_dir.parent
    source = tune_dir if source is None else source
    record = _load(search_dir) if known is None else known
    changed = False
    for path in _state_files(source):
        name = path.relative_to(source).as_posix()
        digest = _sha256(path)
        seen = record.setdefault(name, [])
        if digest not in seen:
            seen.append(digest)
            del seen[:-_KEEP]
            changed = True
    if changed or not (search_dir / DIGEST_FILE).exists():
        temporary = search_dir / f".{DIGEST_FILE}.tmp"
        temporary.write_text(json.dumps(record, indent=0, sort_keys=True))
        os.replace(temporary, search_dir / DIGEST_FILE)


def check_state_digests(tune_dir: Path, trust: bool = False) -> None:
    """Refuse state files in ``tune_dir`` whose digests kdforge did not record.

    Args:
        tune_dir: ``SEARCH_DIR/tune``.
        trust: The user's ``--trust-state``: skip the check.

    Raises:
        SearchError: a state file was replaced or added, or the record is missing.
    """
    files = _state_files(tune_dir)
    if trust or not files:
        return
    record = _load(tune_dir.parent)
    foreign = [
        path.relative_to(tune_dir).as_posix()
        for path in files
        if _sha256(path) not in record.get(path.relative_to(tune_dir).as_posix(), [])
    ]
    if not foreign:
        return
    listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    why = "no digest record" if not record else "changed since kdforge recorded them"
    raise SearchError(
        f"refused to resume {tune_dir.parent}: Ray state files not written by this search "
        f"({why}): {listed}; Ray would unpickle them, which could run code, so nothing "
        "in them has run",
        hint=f"start a new search; only if you trust this folder, run `kdforge resume "
        f"{tune_dir.parent} {TRUST_STATE_SWITCH}`",
    )


class StateDigestRecorder(Callback):
    """Record Tune's state files right after Tune writes them (each step, and at the end).

    A file is hashed again only when its size or modification time changed, so a step
    costs one ``stat`` per state file.
    """

    def __init__(self, tune_dir: Path) -> None:
        self.tune_dir = tune_dir
        self._known = _load(tune_dir.parent)
        self._stamps: dict[Path, tuple[int, int]] = {}
        self._remote = remote_of(tune_dir.parent)
        # Tune's local staging folder of a remote tune/, learnt from the first trial.
        self._source: Path | None = None if self._remote else tune_dir

    def _record_changed(self, trials: list[Any]) -> None:
        if self._source is None and trials:
            self._source = Path(trials[0].storage.experiment_driver_staging_path)
            self._record_uploaded()
        if self._source is None:
            return
        files = _state_files(self._source)
        stamps = {}
        for path in files:
            with_stat = path.stat()
            stamps[path] = (with_stat.st_size, with_stat.st_mtime_ns)
        if stamps != self._stamps:
            record_state_digests(self.tune_dir, self._known, self._source)
            self._stamps = stamps
            # The record (and the journal) reach the store before a crash can lose them.
            sync_search_dir(self.tune_dir.parent)

    def _record_uploaded(self) -> None:
        """Record the state files Tune writes straight to the store (``tuner.pkl``)."""
        if self._remote is None or self._source is None:
            return
        staged = self._source
        with tempfile.TemporaryDirectory(prefix="kdforge-tune-state-") as folder:
            download_tree(
                join(self._remote, self.tune_dir.name),
                Path(folder),
                keep=lambda name: not (staged / name).exists(),
                key="output_dir",
                recursive=False,
            )
            record_state_digests(self.tune_dir, self._known, Path(folder))

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Tune has just written its experiment checkpoint: record it."""
        self._record_changed(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """The trials are done: record what Tune wrote last."""
        self._record_changed(trials)

    def finish(self) -> None:
        """After ``Tuner.fit``: record Tune's last experiment checkpoint."""
        if self._source is not None:
            record_state_digests(self.tune_dir, self._known, self._source)
        self._record_uploaded()
        sync_search_dir(self.tune_dir.parent)
