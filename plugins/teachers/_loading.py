"""Reading teacher model files safely: kdforge checkpoints, TorchScript, plain state dicts.

Every pickle-based file is read with ``torch.load(..., weights_only=True)``, which only
rebuilds tensors and plain containers: a file that needs arbitrary unpickling is
refused before anything in it runs. ``trust=True`` (the teacher's ``trust_checkpoint``
parameter) is the explicit, warned opt-out for files the user vouches for.

TorchScript archives are read with ``torch.jit.load``: their code is TorchScript, not
pickled Python, and their pickles go through TorchScript's restricted unpickler.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdforge import get_registry
from kdforge.data import DataInfo
from kdforge.errors import CheckpointError, ConfigError, first_line

__all__ = [
    "build_from_factory",
    "directory_sha256",
    "extract_state_dict",
    "file_sha256",
    "is_torchscript",
    "read_pickled",
]

logger = logging.getLogger("kdforge.teachers")


def is_torchscript(path: Path) -> bool:
    """True for a TorchScript archive (``torch.jit.save``): a zip holding ``code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any("/code/" in name or name.endswith("/constants.pkl") for name in names)


def read_pickled(path: Path, *, trust: bool, where: str) -> Any:
    """``torch.load`` a file with ``weights_only=True``, or unpickle it fully when trusted.

    Args:
        path: The file.
        trust: Load with ``weights_only=False`` when the safe load refuses the file
            (warned; only for files the user trusts).
        where: Config location for messages (e.g. ``"teacher 'checkpoint'"``).

    Raises:
        CheckpointError: missing/corrupt file, or a file needing arbitrary unpickling
            without ``trust`` (nothing in it has run).
    """
    if not path.exists():
        raise CheckpointError(f"{where}: checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{where}: checkpoint path is a directory, expected a file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust:
            raise CheckpointError(
                f"{where}: refused to load {path}: it needs to unpickle arbitrary Python "
                f"objects, which could run code; kdforge reads checkpoints with "
                f"weights_only=True and did not run anything in it ({first_line(exc)})",
                hint="re-save the model as a state_dict or TorchScript file; only if you "
                "trust this file, set teacher.params.trust_checkpoint: true",
            ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{where}: cannot read checkpoint {path}: the file is truncated or corrupt "
            f"({first_line(exc)})"
        ) from None
    message = (
        f"{where}: trust_checkpoint is true: unpickling {path} with weights_only=False; "
        "this runs any code the file contains"
    )
    warnings.warn(message, UserWarning, stacklevel=2)
    logger.warning(message)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # opt-in: trust_checkpoint
    except Exception as exc:  # any error of foreign unpickling code
        raise CheckpointError(
            f"{where}: unpickling {path} failed: {type(exc).__name__}: {first_line(exc)}"
        ) from None


def extract_state_dict(payload: Any, where: str) -> dict[str, torch.Tensor] | None:
    """The state dict inside a loaded file, or None when it holds none.

    Accepts a bare state dict, or a mapping with a ``state_dict`` / ``model_state_dict``
    entry (training-loop checkpoints). A ``module.`` prefix on every key (saved from
    ``DataParallel``) is removed.
    """
    if not isinstance(payload, Mapping):
        return None
    for key in ("state_dict", "model_state_dict"):
        inner = payload.get(key)
        if isinstance(inner, Mapping):
            payload = inner
            break
    if not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        return None
    state = {str(k): v for k, v in payload.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    logger.debug("%s: state dict with %d tensors", where, len(state))
    return state


def build_from_factory(
    factory: str,
    arch: dict[str, Any],
    input_shape: tuple[int, ...] | None,
    num_classes: int | None,
    where: str,
) -> nn.Module:
    """Build an untrained model from a registered search space or a ``module:callable``.

    Args:
        factory: A search-space plugin name (``mlp``, ``cnn``, ...; its ``build(arch,
            info)`` makes the model) or ``"package.module:callable"`` called as
            ``callable(**arch)``.
        arch: The architecture values.
        input_shape: Per-example input shape (needed by search-space factories).
        num_classes: Number of classes (needed by search-space factories).
        where: Config location for messages.

    Raises:
        ConfigError: unknown factory, missing shape/classes, or a failed build.
    """
    if ":" in factory:
        module_name, _, attr = factory.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"{where}: factory {factory!r} cannot be imported: {exc}",
                hint="give 'package.module:callable' importable from this environment, "
                "or a search-space name (see `kdforge plugins`)",
            ) from None
        try:
            model = target(**arch)
        except Exception as exc:  # user factory code
            raise ConfigError(
                f"{where}: factory {factory!r} failed with arch {arch}: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"{where}: factory {factory!r} returned {type(model).__name__}, "
                "not a torch.nn.Module"
            )
        return model
    record = get_registry().get("search_space", factory)
    if input_shape is None or num_classes is None:
        raise ConfigError(
            f"{where}: factory {factory!r} (a search space) needs input_shape and num_classes",
            hint="set teacher.params.input_shape (e.g. [1, 8, 8]) and teacher.params.num_classes",
        )
    info = DataInfo(name="teacher", input_shape=tuple(input_shape), num_classes=num_classes)
    try:
        return record.cls().build(dict(arch), info)
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{where}: search space {factory!r} cannot build arch {arch}: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load ``state`` strictly into ``model``.

    Raises:
        CheckpointError: the weights do not fit the architecture (names or shapes).
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{where}: the weights do not fit the factory's architecture: {first_line(exc)}",
            hint="check teacher.params.factory and teacher.params.arch",
        ) from None


def file_digest(*parts: bytes | str) -> str:
    """Hex SHA-256 of the given byte strings and strings, in order."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def directory_sha256(folder: Path, skip: tuple[str, ...] = ()) -> str:
    """Hex SHA-256 over the relative names and bytes of every file under ``folder``.

    Args:
        folder: The folder.
        skip: File names left out (e.g. files a download tool writes per access).
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in skip):
        digest.update(str(file.relative_to(folder)).encode())
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
