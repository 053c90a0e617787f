"""Per-position outputs (token tagging) in the soft terms of the logit losses.

Outputs of the ``token_logits`` kind are ``(n, T, K)``: one row of logits per input
position. A soft term compares student and teacher at the positions that hold a word
(target ``!= -2``, :data:`~kdforge.data.NOT_A_WORD`), tagged or not, and averages over
them: padding, special tokens and later sub-tokens never count, and transfer rows
(tags ``-1``) do. The losses never see the inputs, so the targets carry this mask.
"""

from __future__ import annotations

import torch

from kdforge.data import NOT_A_WORD

__all__ = ["position_mean"]


def position_mean(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of per-position ``values`` ``(n, T)`` over the word positions of ``labels``.

    0 (not NaN) for a batch without any word position. No boolean indexing: no host
    sync per batch.
    """
    words = (labels != NOT_A_WORD).to(values.dtype)
    return (values * words).sum() / words.sum().clamp_min(1)
