"""What a search's MLflow parent run says about itself: tags and dataset inputs.

Tags name the teacher, the dataset, the search space and the losses (with their
parameters, as JSON), the kdforge version and, when known, the git commits of the
kdforge source and of the working directory. The dataset's splits are logged as MLflow
dataset inputs (``mlflow.data.from_numpy`` + ``mlflow.log_input``): MLflow stores their
schema, shape and a digest, not the data. The digest comes from kdforge's own content
fingerprint of the splits, so MLflow never copies or re-hashes large arrays, and data
streamed from disk is described from a few rows only.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from kdforge._version import __version__

if TYPE_CHECKING:
    from kdforge.config import SearchConfig
    from kdforge.data import DataSplits
    from kdforge.interfaces import Teacher

# MLflow (~1.5 s to import) is imported inside the functions that log: a search then
# imports it in the background while its data loads (kdforge.search.services).

__all__ = [
    "dataset_inputs",
    "git_commit",
    "kdforge_version",
    "log_dataset_inputs",
    "log_search_metadata",
    "search_tags",
    "status_reason",
]

#: Rows read to describe (schema, example values) inputs streamed from disk.
LAZY_SAMPLE_ROWS = 256
#: MLflow's limit on a tag value is 8,000 characters; long JSON is cut below it.
_TAG_LIMIT = 5000
_DATASET_RACE_RETRIES = 5
#: MLflow's split names for a dataset input's context.
_CONTEXTS = {"train": "train", "val": "validation", "test": "test", "transfer": "transfer"}


def kdforge_version() -> str:
    """The installed kdforge version."""
    return __version__


def git_commit(folder: str | Path) -> str | None:
    """The commit checked out in the git work tree holding ``folder``, or None.

    A ``-dirty`` suffix marks uncommitted changes to tracked files. None when git is
    missing, ``folder`` is not inside a work tree, or git does not answer in time.
    """
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=str(folder),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if head.returncode != 0 or not head.stdout.strip():
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=str(folder),
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return f"{commit}-dirty" if status.returncode == 0 and status.stdout.strip() else commit


def _json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _TAG_LIMIT else text[: _TAG_LIMIT - 3] + "..."


def search_tags(
    config: SearchConfig, teacher: Teacher | None = None, splits: DataSplits | None = None
) -> dict[str, str]:
    """The tags of a search's parent run.

    Args:
        config: The search config.
        teacher: The loaded teacher (adds its fingerprint and size), if available.
        splits: The loaded data (adds split sizes and the content fingerprint).

    Returns:
        Tag name -> value, all under ``kdforge.``.
    """
    loss = config.loss.model_dump(mode="json")
    tags = {
        "kdforge.version": kdforge_version(),
        "kdforge.teacher": config.teacher.name,
        "kdforge.teacher.params": _json(config.teacher.params),
        "kdforge.dataset": config.dataset.name,
        "kdforge.dataset.params": _json(config.dataset.params),
        "kdforge.search_space": config.student.name,
        "kdforge.search_space.params": _json(config.student.params),
        "kdforge.loss": config.loss.name,
        "kdforge.losses": _json(
            {"name": loss["name"], "params": loss["params"], "hparams": loss["hparams"]}
        ),
        "kdforge.objectives": ",".join(o.name for o in getattr(config, "objectives", []))
        or "val_acc",
    }
    source = git_commit(Path(__file__).resolve().parent)
    if source:
        tags["kdforge.git_commit"] = source
    workdir = git_commit(Path.cwd())
    if workdir:
        tags["kdforge.workdir_git_commit"] = workdir
    if teacher is not None:
        tags["kdforge.teacher.fingerprint"] = str(teacher.fingerprint())
        tags["kdforge.teacher.num_parameters"] = str(teacher.num_parameters())
    if splits is not None:
        tags["kdforge.dataset.fingerprint"] = splits.fingerprint()
        tags["kdforge.dataset.sizes"] = _json({k: len(v) for k, v in splits.named_splits().items()})
    return tags


def status_reason(
    status: str, last_epoch: int | None, epochs: int, last_result: dict[str, Any] | None = None
) -> str:
    """Why a trial ended as it did, for its nested run's ``kdforge.status_reason`` tag.

    Args:
        status: ``finished`` or ``stopped`` (failed trials carry their error instead).
        last_epoch: The last epoch the trial reported, if any.
        epochs: The epoch budget of a trial.
        last_result: The trial's last reported result (a rejected student's carries
            ``constraint_violation``).
    """
    violation = (last_result or {}).get("constraint_violation")
    if violation:
        return f"rejected before training: {violation}"[:500]
    if status == "finished":
        return f"trained all {epochs} epochs"
    done = last_epoch or 0
    return (
        f"stopped early after epoch {done} of {epochs}: the ASHA scheduler ranked it low, "
        "or the search's time or failure budget ended it"
    )


def dataset_inputs(splits: DataSplits, name: str) -> list[tuple[Any, str, dict[str, str]]]:
    """One MLflow dataset per split: ``(dataset, context, tags)``.

    In-memory tensors are passed to MLflow without copying; inputs streamed from disk
    are described by their first :data:`LAZY_SAMPLE_ROWS` rows (tag
    ``kdforge.sampled_rows``), their size is in the tag ``kdforge.rows``.
    """
    import mlflow.data.numpy_dataset

    fingerprint = splits.fingerprint()
    out = []
    for split_name, split in splits.named_splits().items():
        rows = len(split)
        tags = {"kdforge.rows": str(rows), "kdforge.split": split_name}
        if isinstance(split.x, torch.Tensor):
            features = split.x.detach().cpu().numpy()
            targets = split.y.detach().cpu().numpy()
        else:
            count = min(rows, LAZY_SAMPLE_ROWS)
            features = split.x.read_rows(list(range(count))).cpu().numpy()
            targets = split.y[:count].detach().cpu().numpy()
            tags["kdforge.sampled_rows"] = str(count)
        digest = hashlib.sha256(f"{fingerprint}:{split_name}".encode()).hexdigest()[:16]
        dataset = mlflow.data.numpy_dataset.from_numpy(
            features, targets=targets, name=f"{name}-{split_name}", digest=digest
        )
        out.append((dataset, _CONTEXTS.get(split_name, split_name), tags))
    return out


def log_dataset_inputs(splits: DataSplits, name: str) -> None:
    """Log every split of ``splits`` as an input of the active MLflow run."""
    import mlflow

    inputs = dataset_inputs(splits, name)
    for attempt in range(_DATASET_RACE_RETRIES):
        try:
            mlflow.log_inputs(
                datasets=[d for d, _, _ in inputs],
                contexts=[c for _, c, _ in inputs],
                tags_list=[t for _, _, t in inputs],
            )
            return
        except mlflow.exceptions.MlflowException as error:
            # Two searches on one store may insert the same dataset row at once; the
            # store checks for the row, then inserts, so the slower one hits the unique
            # index. On the retry the row exists and is linked instead of inserted.
            if "UNIQUE constraint" not in str(error) or attempt + 1 == _DATASET_RACE_RETRIES:
                raise
            time.sleep(0.2 * (attempt + 1))


def log_search_metadata(config: SearchConfig, teacher: Teacher, splits: DataSplits) -> None:
    """Tag the active (parent) run and log the dataset as its input."""
    import mlflow

    mlflow.set_tags(search_tags(config, teacher, splits))
    log_dataset_inputs(splits, config.dataset.name)
