"""Teacher ``checkpoint``: a model file written by kdforge (``kdforge train-teacher``).

The file holds the architecture (search-space name + arch dict) and the weights; it is
read with ``weights_only=True`` so loading it never runs pickled code.
"""

from __future__ import annotations

import torch
from pydantic import Field

import kdforge
from kdforge.checkpoint import build_model, checkpoint_info, file_sha256, load_checkpoint
from kdforge.interfaces import ModelOutput, PluginParams, Teacher


class CheckpointParams(PluginParams):
    """Parameters of the ``checkpoint`` teacher."""

    path: str = Field(description="Path of the kdforge checkpoint file.")


class CheckpointTeacher(Teacher):
    """A teacher loaded from a kdforge checkpoint file (weights_only, no pickled code)."""

    name = "checkpoint"
    Params = CheckpointParams

    def load(self) -> None:
        """Read the file and rebuild the model."""
        params = self.params
        assert isinstance(params, CheckpointParams)
        self._payload = load_checkpoint(params.path)
        self._model = build_model(self._payload, source=params.path)
        self._info = checkpoint_info(self._payload)
        self._sha = file_sha256(params.path)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> ModelOutput:
        """Logits of the teacher for one batch."""
        return ModelOutput(logits=self._model(x))

    def fingerprint(self) -> str:
        """SHA-256 of the checkpoint file."""
        return self._sha

    def num_parameters(self) -> int:
        """Number of parameters of the teacher model."""
        return sum(p.numel() for p in self._model.parameters())

    def expected_input_shape(self) -> tuple[int, ...] | None:
        """Input shape the teacher was trained on."""
        return tuple(self._info.input_shape)

    def expected_num_classes(self) -> int | None:
        """Number of classes the teacher predicts."""
        return self._info.num_classes

    @property
    def meta(self) -> dict:
        """Metadata stored with the checkpoint (e.g. its test accuracy)."""
        return dict(self._payload.get("meta", {}))


@kdforge.hookimpl
def register_teachers(register: kdforge.Register) -> None:
    """Register the ``checkpoint`` teacher."""
    register("checkpoint", CheckpointTeacher)
