"""Teacher ``checkpoint``: a model file on disk, loaded without running pickled code.

Three file kinds (``format: auto`` tells them apart):

* a **kdforge checkpoint** (``kdforge train-teacher``): architecture + weights;
* a **TorchScript** archive (``torch.jit.save``), read with ``torch.jit.load``;
* a plain **state dict** (``torch.save(model.state_dict())``, or a dict with a
  ``state_dict`` entry) plus an architecture from a *factory*: a registered search
  space (``factory: mlp`` + ``arch`` + ``input_shape`` + ``num_classes``) or an
  importable ``"package.module:callable"`` called with ``**arch``.

Pickle files are read with ``weights_only=True``; a file that needs arbitrary
unpickling is refused (nothing in it runs) unless ``trust_checkpoint: true``, which
loads it with ``weights_only=False`` after a warning (it may then also hold a whole
pickled ``nn.Module``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

import kdforge
from kdforge import build_checkpoint_model
from kdforge.checkpoint import FORMAT, checkpoint_info
from kdforge.data import DataInfo
from kdforge.errors import CheckpointError
from kdforge.interfaces import ModelOutput, PluginParams, Teacher
from kdforge.plugins.teachers._loading import (
    build_from_factory,
    extract_state_dict,
    file_digest,
    file_sha256,
    is_torchscript,
    load_weights,
    read_pickled,
)

__all__ = ["CheckpointParams", "CheckpointTeacher"]

_WHERE = "teacher 'checkpoint'"


class CheckpointParams(PluginParams):
    """Parameters of the ``checkpoint`` teacher."""

    path: str = Field(description="Path of the model file.")
    format: Literal["auto", "kdforge", "torchscript", "state_dict"] = Field(
        "auto", description="File kind; 'auto' detects it from the content."
    )
    factory: str | None = Field(
        None,
        description="state_dict files: a search-space name (mlp, cnn, ...) or "
        "'package.module:callable' that builds the architecture.",
    )
    arch: dict[str, Any] = Field(
        default_factory=dict, description="state_dict files: architecture values for the factory."
    )
    input_shape: list[int] | None = Field(
        None, description="Per-example input shape (needed by search-space factories)."
    )
    num_classes: int | None = Field(
        None, ge=1, description="Classes the model predicts (needed by search-space factories)."
    )
    trust_checkpoint: bool = Field(
        False,
        description="Unpickle files that weights_only=True refuses (runs their code; warned).",
    )


class CheckpointTeacher(Teacher):
    """A teacher loaded from a model file (kdforge checkpoint, TorchScript or state dict)."""

    name = "checkpoint"
    Params = CheckpointParams

    def load(self) -> None:
        """Read the file and rebuild the model (in eval mode)."""
        params = self.params
        assert isinstance(params, CheckpointParams)
        path = Path(params.path).expanduser()
        self._info: DataInfo | None = None
        self._meta: dict[str, Any] = {}
        if not path.is_file():
            read_pickled(path, trust=False, where=_WHERE)  # raises the right message
        kind: str = params.format
        if kind == "torchscript" or (kind == "auto" and is_torchscript(path)):
            model = self._load_torchscript(path)
            kind = "torchscript"
        else:
            model, kind = self._load_pickled(path, kind)
        model.eval()
        self._model = model
        self._kind = kind
        self._sha = file_sha256(path)
        if kind == "state_dict":
            # The same weights under another architecture would be another teacher.
            recipe = json.dumps({"factory": params.factory, "arch": params.arch}, sort_keys=True)
            self._sha = file_digest(self._sha, recipe)

    def _load_torchscript(self, path: Path) -> nn.Module:
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except (RuntimeError, ValueError) as exc:
            raise CheckpointError(
                f"{_WHERE}: {path} is not a readable TorchScript archive: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
            ) from None

    def _load_pickled(self, path: Path, kind: str) -> tuple[nn.Module, str]:
        params = self.params
        assert isinstance(params, CheckpointParams)
        payload = read_pickled(path, trust=params.trust_checkpoint, where=_WHERE)
        if isinstance(payload, nn.Module):  # only reachable with trust_checkpoint
            return payload, "pickled_module"
        if isinstance(payload, dict) and payload.get("format") == FORMAT and kind != "state_dict":
            for key in ("space", "arch", "info", "state_dict"):
                if key not in payload:
                    raise CheckpointError(f"{_WHERE}: kdforge checkpoint {path} lacks {key!r}")
            self._info = checkpoint_info(payload)
            self._meta = dict(payload.get("meta", {}))
            return build_checkpoint_model(payload, source=str(path)), "kdforge"
        if kind == "kdforge":
            raise CheckpointError(
                f"{_WHERE}: {path} is not a kdforge checkpoint (missing format marker {FORMAT!r})",
                hint="set teacher.params.format: auto (or state_dict with a factory)",
            )
        state = extract_state_dict(payload, _WHERE)
        if state is None:
            raise CheckpointError(
                f"{_WHERE}: {path} holds neither a kdforge checkpoint nor a state dict",
                hint="save torch.save(model.state_dict(), path) or a TorchScript archive",
            )
        if not params.factory:
            raise CheckpointError(
                f"{_WHERE}: {path} is a plain state dict: the architecture is missing "
                "(teacher.params.factory is not set)",
                hint="set teacher.params.factory (a search space such as mlp, or "
                "'package.module:callable') and teacher.params.arch",
            )
        shape = tuple(params.input_shape) if params.input_shape else None
        model = build_from_factory(params.factory, params.arch, shape, params.num_classes, _WHERE)
        load_weights(model, state, _WHERE)
        return model, "state_dict"

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> ModelOutput:
        """Logits of the teacher for one batch."""
        return ModelOutput(logits=self._model(x))

    def fingerprint(self) -> str:
        """SHA-256 of the file (with the factory and arch for a state dict)."""
        return self._sha

    def num_parameters(self) -> int:
        """Number of parameters of the teacher model."""
        return sum(p.numel() for p in self._model.parameters())

    def expected_input_shape(self) -> tuple[int, ...] | None:
        """Input shape the teacher was trained on (from the checkpoint or the params)."""
        if self._info is not None:
            return tuple(self._info.input_shape)
        params = self.params
        assert isinstance(params, CheckpointParams)
        return tuple(params.input_shape) if params.input_shape else None

    def expected_input_dtype(self) -> str | None:
        """dtype of the inputs a kdforge checkpoint was trained on (else unknown)."""
        return self._info.input_dtype if self._info is not None else None

    def expected_num_classes(self) -> int | None:
        """Number of classes the teacher predicts (from the checkpoint or the params)."""
        if self._info is not None:
            return self._info.num_classes
        params = self.params
        assert isinstance(params, CheckpointParams)
        return params.num_classes

    def torch_module(self) -> nn.Module | None:
        """The loaded model (TorchScript modules included), for feature taps."""
        return getattr(self, "_model", None)

    @property
    def kind(self) -> str:
        """What the file held: kdforge, torchscript, state_dict or pickled_module."""
        return self._kind

    @property
    def meta(self) -> dict:
        """Metadata stored with a kdforge checkpoint (e.g. its test accuracy)."""
        return dict(self._meta)


@kdforge.hookimpl
def register_teachers(register: kdforge.Register) -> None:
    """Register the ``checkpoint`` teacher."""
    register("checkpoint", CheckpointTeacher)
