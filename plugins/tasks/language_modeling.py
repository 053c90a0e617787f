"""Task ``language_modeling``: a distribution over the vocabulary at every position.

Inputs are token ids ``(n, T)``; the model gives one logit per vocabulary entry at every
position, ``(n, T, V)`` (output kind ``token_logits``, ``num_classes`` = V). Targets are
int64 ``(n, T)``: the token to predict at each position, or

* ``-1`` (:data:`~kdforge.data.UNLABELED`): a position whose token is not scored but
  is distilled (the teacher's distribution still teaches it: transfer rows);
* ``-2`` (:data:`~kdforge.data.NOT_A_WORD`): a position that is neither (padding; in a
  masked model, the positions that were not masked, as DistilBERT's loss did).

Two ``mode`` values, as the data prepares them:

* ``causal``: the target at position ``t`` is the input token at ``t + 1`` (the next
  token); the last real position predicts nothing. :meth:`check` verifies the shift.
* ``masked``: the inputs hold the mask token at the masked positions and the targets
  the original token there (BERT's 15% with 80/10/10, done by the dataset).

The label loss is cross-entropy over the scored positions, the soft target the softmax
per position at temperature T; the default distillation loss is ``lm_kd`` (forward KL
per real token, mixed with the label loss). Selection uses validation **perplexity** (``exp`` of the
mean cross-entropy per scored token): lower is better. Token accuracy is reported beside.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

import kdforge
from kdforge.data import DataInfo, DataSplits
from kdforge.errors import DataError
from kdforge.interfaces import PluginParams
from kdforge.plugins.tasks._positions import PositionTask, check_position_targets

__all__ = ["LanguageModeling", "LanguageModelingParams"]


class LanguageModelingParams(PluginParams):
    """Parameters of the ``language_modeling`` task."""

    mode: Literal["causal", "masked"] = Field(
        "causal",
        description="causal: each position predicts the next input token (checked); "
        "masked: the targets are the original tokens at the masked positions.",
    )


class LanguageModeling(PositionTask):
    """Per-position vocabulary logits, next-token or masked-token cross-entropy, perplexity."""

    name = "language_modeling"
    Params = LanguageModelingParams
    metric = "perplexity"
    higher_is_better = False
    metric_names = ("perplexity", "token_acc")
    # A failed trial must rank below any trained model: far above a uniform guess over
    # any vocabulary a student is distilled on.
    metric_failed_value = 1e9
    # Forward KL per real token, and the only loss that reads a per-position top-k cache.
    default_loss = "lm_kd"

    def num_outputs(self, info: DataInfo) -> int:
        """The vocabulary size (logits per position)."""
        return info.num_classes

    def check(self, splits: DataSplits) -> None:
        """Targets must be int64 ``(n, T)`` token ids in ``[0, V)``, -1 or -2; in causal
        mode each scored target must be the next input token."""
        assert isinstance(self.params, LanguageModelingParams)
        check_position_targets(
            self.name,
            splits,
            "targets",
            "give the token to predict at each position, -1 for a position only distilled, "
            "-2 for padding",
        )
        if self.params.mode == "causal":
            for name, split in splits.named_splits().items():
                if isinstance(split.x, torch.Tensor):
                    self._check_shift(name, split.x, split.y)

    @staticmethod
    def _check_shift(name: str, x: torch.Tensor, y: torch.Tensor) -> None:
        """Causal targets are the inputs moved one position left."""
        if x.shape != y.shape:
            raise DataError(
                f"task language_modeling: the {name} split has inputs {tuple(x.shape)} but "
                f"targets {tuple(y.shape)}; they must have one target per input position"
            )
        scored = y[:, :-1] >= 0
        wrong = scored & (y[:, :-1] != x[:, 1:])
        if bool(wrong.any()) or bool((y[:, -1] >= 0).any()):
            row = int(wrong.any(dim=1).nonzero()[0]) if bool(wrong.any()) else 0
            raise DataError(
                f"task language_modeling (mode causal): the {name} split's targets are not "
                f"the next input tokens (first at row {row})",
                hint="target[t] must be input[t + 1] (-2 at the last position); for "
                "masked-token targets set task.params.mode: masked",
            )

    def needs_causal_student(self) -> bool:
        """In causal mode a student that saw position ``t + 1`` would read its answer."""
        assert isinstance(self.params, LanguageModelingParams)
        return self.params.mode == "causal"

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Perplexity (``exp`` of the mean cross-entropy per scored token) and token accuracy."""
        targets = targets.to(outputs.device)
        keep = targets >= 0
        if not bool(keep.any()):
            return dict.fromkeys(self.metric_names, float("nan"))
        logits, truth = outputs[keep].float(), targets[keep]
        cross_entropy = float(F.cross_entropy(logits, truth))
        return {
            "perplexity": math.exp(min(cross_entropy, 700.0)),  # no overflow to inf
            "token_acc": float((logits.argmax(dim=-1) == truth).float().mean()),
        }


@kdforge.hookimpl
def register_tasks(register: kdforge.Register) -> None:
    """Register the ``language_modeling`` task."""
    register("language_modeling", LanguageModeling)
