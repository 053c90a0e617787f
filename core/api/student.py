"""``kdforge.load_student``: a searched student as a PyTorch module, without pickle.

From a search folder, ``student.pt`` (a kdforge checkpoint: the search space's name,
the architecture values and a ``state_dict``) is read with ``weights_only=True`` and
the model is rebuilt by its search-space plugin, as kdforge's own checkpoints are.
From an MLflow model URI, the same file is downloaded from the search's parent run
(the run that registered the model version).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from kdforge.checkpoint import load_checkpoint
from kdforge.errors import CheckpointError
from kdforge.plugin_host.resolve import build_checkpoint_model
from kdforge.tracking.registry import download_student_checkpoint

__all__ = ["STUDENT_FILE", "load_student"]

#: The chosen student's checkpoint in a search folder (and in its parent run).
STUDENT_FILE = "student.pt"


def load_student(source: str | Path, *, tracking_uri: str | None = None) -> nn.Module:
    """The student a search chose, as a PyTorch module in eval mode.

    Args:
        source: A search folder (``output_dir/NAME/TIMESTAMP``), a ``student.pt``
            file, or an MLflow URI of the registered student (``models:/NAME@ALIAS``,
            ``models:/NAME/VERSION``) or of its search run (``runs:/RUN_ID``).
        tracking_uri: MLflow tracking URI for a model URI (default: the configured one).

    Raises:
        CheckpointError: no student checkpoint at ``source``.
    """
    text = str(source)
    if "://" in text or text.startswith(("models:/", "runs:/")):
        path = download_student_checkpoint(text, STUDENT_FILE, tracking_uri=tracking_uri)
    else:
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / STUDENT_FILE
    if not path.is_file():
        raise CheckpointError(
            f"no student checkpoint at {path}",
            hint="pass a search folder (output_dir/NAME/TIMESTAMP) holding student.pt, or a "
            "models:/NAME@ALIAS URI",
        )
    return build_checkpoint_model(load_checkpoint(path), str(path))
