"""Task ``token_classification``: one tag per word of a token sequence (NER-style tagging).

Inputs are token ids ``(n, T)`` (padded to ``T``); the model gives one logit per tag at
every position, ``(n, T, K)`` (output kind ``token_logits``). Targets are int64
``(n, T)``, aligned with the tokens by the first-sub-token rule:

* ``0..K-1``: the tag of the word whose *first* sub-token sits at this position;
* ``-1`` (:data:`~kdforge.data.UNLABELED`): the first sub-token of a word whose tag is
  unknown (every word of a transfer row): not scored, but distilled;
* ``-2`` (:data:`~kdforge.data.NOT_A_WORD`): any other position (padding, special
  tokens such as ``[CLS]``/``[SEP]``, a word's later sub-tokens): neither scored nor
  distilled.

Why two "no label" values: a distillation loss sees outputs and targets, never the
inputs, so the targets must tell it which positions hold a word. The soft term then
runs over the word positions of every row (transfer rows included), the label term
over the tagged ones; padding never counts (a padded position is always ``-2``).

The label loss is cross-entropy over the tagged positions, the soft target a softmax
per position at temperature T. Metrics over the tagged positions: ``token_macro_f1``
(F1 per tag, averaged over the tags that occur or are predicted) and ``token_acc``.
Selection uses ``token_macro_f1``: tags are skewed (most words are "outside" any
entity), and accuracy would reward a model that always predicts the common tag.
A row counts as labeled when any of its positions is tagged.
"""

from __future__ import annotations

import torch

import kdforge
from kdforge.data import NOT_A_WORD, DataInfo, DataSplits
from kdforge.plugins.tasks._metrics import macro_f1
from kdforge.plugins.tasks._positions import PositionTask, check_position_targets

__all__ = ["TokenClassification", "word_positions"]


def word_positions(targets: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the positions that hold a word (tagged or not): the soft term's."""
    return targets != NOT_A_WORD


class TokenClassification(PositionTask):
    """One tag per word: K logits per position, cross-entropy, token-level macro-F1."""

    name = "token_classification"
    metric = "token_macro_f1"
    higher_is_better = True
    metric_names = ("token_macro_f1", "token_acc")

    def num_outputs(self, info: DataInfo) -> int:
        """The number of tags (logits per position)."""
        return info.num_classes

    def check(self, splits: DataSplits) -> None:
        """Targets must be int64 ``(n, seq_len)`` with values in ``[0, K)``, -1 or -2."""
        check_position_targets(
            self.name,
            splits,
            "tags",
            "a tagging dataset gives one tag id per token position, -1 for an unknown tag "
            "and -2 for padding, special tokens and later sub-tokens",
        )

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Token-level macro-F1 and accuracy over the tagged positions."""
        targets = targets.to(outputs.device)
        keep = targets >= 0
        truth_ids = targets[keep]
        if len(truth_ids) == 0:
            return dict.fromkeys(self.metric_names, float("nan"))
        predicted = outputs[keep].argmax(dim=-1)
        k = outputs.shape[-1]
        one_hot = torch.eye(k, dtype=torch.bool, device=outputs.device)
        guessed, truth = one_hot[predicted], one_hot[truth_ids]
        # Tags neither present nor predicted are left out of the mean (scikit-learn's rule).
        seen = guessed.any(0) | truth.any(0)
        return {
            "token_macro_f1": macro_f1(guessed[:, seen], truth[:, seen]),
            "token_acc": float((predicted == truth_ids).float().mean()),
        }


@kdforge.hookimpl
def register_tasks(register: kdforge.Register) -> None:
    """Register the ``token_classification`` task."""
    register("token_classification", TokenClassification)
