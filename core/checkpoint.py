"""kdforge's own model file: architecture spec plus ``state_dict``, loaded safely.

A checkpoint is a ``torch.save`` of a plain dict::

    {"format": "kdforge-checkpoint", "version": 1,
     "space": "mlp", "arch": {...}, "info": {...DataInfo...},
     "state_dict": {...}, "meta": {...}, "task": {...}}

``task`` (optional) names the task the model was trained for, with its params and the
statistics it learned (``Task.record()``): a model trained on standardised regression
targets is rebuilt with the head that returns predictions in the data's units.

It holds only tensors and plain Python values, so it is always read with
``torch.load(..., weights_only=True)``: a file that would need to unpickle arbitrary
objects is refused and nothing in it runs.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdforge.data import DataInfo
from kdforge.errors import CheckpointError, first_line

__all__ = ["FORMAT", "checkpoint_info", "load_checkpoint", "save_checkpoint"]

FORMAT = "kdforge-checkpoint"


def save_checkpoint(
    path: str | Path,
    *,
    space: str,
    arch: dict[str, Any],
    info: DataInfo,
    model: nn.Module,
    meta: dict[str, Any] | None = None,
    task: dict[str, Any] | None = None,
) -> Path:
    """Write a kdforge checkpoint and return its path.

    Args:
        path: File to write (parent folders are created).
        space: Search-space plugin name whose ``build`` recreates the model.
        arch: The architecture dict passed to ``build``.
        info: The data description the model was built for.
        model: The trained model.
        meta: Plain values to keep with it (metrics, seed, dataset name).
        task: ``Task.record()`` of the task it was trained for (plain values); None
            for classification without anything to restore.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    info_dict = asdict(info)
    info_dict["input_shape"] = list(info.input_shape)
    if info.teacher_input_shape is not None:
        info_dict["teacher_input_shape"] = list(info.teacher_input_shape)
    if info.class_names is not None:
        info_dict["class_names"] = list(info.class_names)
    payload = {
        "format": FORMAT,
        "version": 1,
        "space": space,
        "arch": dict(arch),
        "info": info_dict,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if task is not None:
        payload["task"] = dict(task)
    tmp = target.with_name(target.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(target)
    return target


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a kdforge checkpoint with ``weights_only=True``.

    Raises:
        CheckpointError: missing file, a directory, truncated/corrupt data, a file that
            needs arbitrary unpickling (refused, never executed), or not a kdforge file.
    """
    file = Path(path)
    if not file.exists():
        raise CheckpointError(f"checkpoint not found: {file}")
    if file.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, expected a file: {file}")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {file}: it needs to unpickle arbitrary Python objects, which "
            f"could run code ({first_line(exc)})",
            hint="only load files you trust; re-save the model as a kdforge checkpoint",
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {file}: the file is truncated or corrupt ({first_line(exc)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{file} is not a kdforge checkpoint (missing format marker {FORMAT!r})",
            hint="create one with `kdforge train-teacher` or kdforge.save_checkpoint",
        )
    for key in ("space", "arch", "info", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"kdforge checkpoint {file} lacks the {key!r} entry")
    return payload


def checkpoint_info(payload: dict[str, Any]) -> DataInfo:
    """The :class:`DataInfo` stored in a loaded checkpoint."""
    raw = dict(payload["info"])
    raw["input_shape"] = tuple(raw["input_shape"])
    if raw.get("teacher_input_shape") is not None:
        raw["teacher_input_shape"] = tuple(raw["teacher_input_shape"])
    if raw.get("class_names") is not None:
        raw["class_names"] = tuple(raw["class_names"])
    return DataInfo(**raw)
