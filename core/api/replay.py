"""``DistillResult.to_config``: the YAML that re-runs a search from the command line.

A search on in-memory objects names them by keys that mean nothing to another
process, so their content is written to files the CLI's plugins read, without pickle:

* data: the splits as the search used them, ``replay/data.npz`` with
  ``x_train, y_train, x_val, ...`` for the ``arrays`` dataset (same rows, same splits);
* an ``nn.Module`` teacher: TorchScript (``torch.jit.trace`` on two validation rows),
  ``replay/teacher.ts`` for the ``checkpoint`` teacher; a Hugging Face model:
  ``save_pretrained`` into ``replay/teacher-hf`` for the ``huggingface`` teacher;
* anything else (a plain function, a module tracing refuses): a placeholder section,
  with a comment at the top of the YAML saying what to replace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from kdforge.config import PluginRef, SearchConfig
from kdforge.data import DataSplits
from kdforge.errors import first_line
from kdforge.plugin_host.resolve import instantiate

__all__ = ["REPLAY_DIR", "replay_config"]

#: Where the files of in-memory objects go, inside the search folder.
REPLAY_DIR = "replay"
_IN_MEMORY = "in_memory"


def replay_config(config: SearchConfig, search_dir: Path) -> str:
    """The config as YAML, in-memory teacher and data replaced by files (see module)."""
    raw = config.model_dump(mode="json")
    notes: list[str] = []
    folder = search_dir / REPLAY_DIR
    splits: DataSplits | None = None
    if config.dataset.name == _IN_MEMORY:
        splits = instantiate("dataset", config.dataset, "dataset").load(config.seed)
        folder.mkdir(parents=True, exist_ok=True)
        raw["dataset"] = {"name": "arrays", "params": {"path": str(_write_splits(splits, folder))}}
    if config.teacher.name == _IN_MEMORY:
        raw["teacher"], note = _teacher_files(config.teacher, splits, folder)
        if note:
            notes.append(note)
    header = "".join(f"# REPLACE: {note}\n" for note in notes)
    return header + yaml.safe_dump(raw, sort_keys=False)


def _write_splits(splits: DataSplits, folder: Path) -> Path:
    arrays: dict[str, np.ndarray] = {}
    names = splits.info.class_names
    numbered = names is None or list(names) == [str(i) for i in range(len(names))]
    for name, split in splits.named_splits().items():
        x = split.x if isinstance(split.x, torch.Tensor) else split.x.read_rows(range(len(split.x)))
        arrays[f"x_{name}"] = x.numpy()
        if name == "transfer":
            continue
        y = split.y.numpy()
        # Class names, when they are not 0..K-1, so the arrays dataset numbers them alike.
        arrays[f"y_{name}"] = y if numbered else np.array([names[i] for i in y])  # type: ignore[index]
    path = folder / "data.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


def _teacher_files(
    ref: PluginRef, splits: DataSplits | None, folder: Path
) -> tuple[dict[str, Any], str | None]:
    """The teacher section for saved files, and a note when it could not be saved."""
    teacher = instantiate("teacher", ref, "teacher")
    teacher.load()
    model = teacher.torch_module()
    placeholder = {"name": "checkpoint", "params": {"path": "REPLACE-WITH-teacher.ts"}}
    if model is None:
        return placeholder, (
            "the teacher was a Python callable, which cannot be saved without pickle: save "
            "it as TorchScript (torch.jit.save) and set teacher.params.path"
        )
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_pretrained") and hasattr(model, "config"):
        target = folder / "teacher-hf"
        model.save_pretrained(str(target))  # safetensors: no pickle
        return {"name": "huggingface", "params": {"path": str(target)}}, None
    if splits is None:
        return placeholder, (
            "the teacher could not be traced without in-memory example rows: save it as "
            "TorchScript (torch.jit.save) and set teacher.params.path"
        )
    example = splits.val.x[:2] if isinstance(splits.val.x, torch.Tensor) else None
    try:
        with torch.no_grad():
            traced = torch.jit.trace(model.eval(), example, check_trace=False)
        target = folder / "teacher.ts"
        torch.jit.save(traced, str(target))
    except Exception as exc:  # tracing refuses many things; say so instead of failing
        return placeholder, (
            f"TorchScript tracing of the teacher failed ({first_line(exc)}): save it "
            "yourself and set teacher.params.path"
        )
    return {"name": "checkpoint", "params": {"path": str(target), "format": "torchscript"}}, None
