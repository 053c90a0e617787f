"""Metric formulas the built-in tasks share, written on tensors (no scikit-learn in trials)."""

from __future__ import annotations

import torch

__all__ = ["average_precision", "macro_f1", "r2_score"]


def macro_f1(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over columns of F1 for boolean ``(n, L)`` predictions and truths.

    A column with neither a true nor a predicted positive scores 1 (nothing to find,
    nothing wrongly found), as scikit-learn's ``zero_division=1``.
    """
    tp = (predicted & truth).sum(0).double()
    fp = (predicted & ~truth).sum(0).double()
    fn = (~predicted & truth).sum(0).double()
    denominator = 2 * tp + fp + fn
    f1 = torch.where(denominator > 0, 2 * tp / denominator.clamp_min(1), torch.ones_like(tp))
    return float(f1.mean())


def average_precision(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean over columns of average precision (area under precision-recall, step rule).

    ``scores`` ``(n, L)`` rank the rows per column; ``truth`` is boolean. Rows with equal
    scores form one threshold, as in scikit-learn's ``average_precision_score`` (tied
    rows count together, whatever their order). Columns without a positive row are left
    out (their precision is undefined); NaN when none is left.
    """
    values = []
    for column in range(scores.shape[1]):
        positives = truth[:, column]
        count = int(positives.sum())
        if count == 0:
            continue
        ranked, order = torch.sort(scores[:, column].double(), descending=True)
        true_positives = positives[order].double().cumsum(0)
        # One threshold per distinct score: the last row of each run of equal scores.
        last = torch.ones_like(ranked, dtype=torch.bool)
        last[:-1] = ranked[1:] != ranked[:-1]
        at = torch.nonzero(last).squeeze(1)
        hits = true_positives[at]
        precision = hits / (at + 1).double()
        recall_gain = torch.diff(hits, prepend=hits.new_zeros(1)) / count
        values.append(float((precision * recall_gain).sum()))
    return float(sum(values) / len(values)) if values else float("nan")


def r2_score(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """Coefficient of determination, averaged over target columns (``(n, R)`` tensors).

    A constant target column scores 1 if predicted exactly, else 0 (scikit-learn's
    ``force_finite`` rule), so one flat column cannot make the mean infinite.
    """
    residual = ((truth - predicted) ** 2).sum(0).double()
    total = ((truth - truth.mean(0)) ** 2).sum(0).double()
    flat = total == 0
    r2 = 1 - residual / total.clamp_min(1e-300)
    r2 = torch.where(flat, (residual == 0).double(), r2)
    return float(r2.mean())
