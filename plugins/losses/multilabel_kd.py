"""Loss ``multilabel_kd``: soft targets per label for multi-label outputs (sigmoids).

Every label is its own binary problem, so the softmax KL of ``hinton_kd`` becomes one
Bernoulli KL per label, each at its own temperature ``T_l``::

    p_l = sigmoid(t_l / T_l),  q_l = sigmoid(s_l / T_l)
    KL_l = p_l log(p_l / q_l) + (1 - p_l) log((1 - p_l) / (1 - q_l))
    loss = (1 - alpha) * label_loss(s, y) + alpha * mean_rows mean_labels T_l^2 * KL_l

``label_loss`` is the task's (binary cross-entropy over the known label cells); rows
whose labels are all NaN (transfer data) enter only the soft term. ``KL_l`` is computed
stably as ``BCE_with_logits(s_l/T_l, p_l) - BCE_with_logits(t_l/T_l, p_l)`` (soft-target
cross-entropy minus the teacher's entropy): the same gradients as the soft-target BCE,
but 0 when the student equals the teacher. The ``T_l^2`` factor plays the part it does in
Hinton et al. (2015): the gradient of a sigmoid KL at temperature T shrinks as ``1/T^2``.

Per-label temperatures. One searched base ``temperature`` T is scaled per label from
the teacher's logits on the batch given to ``bind`` (before training)::

    T_l = T * clamp(std_l / median_l(std_l), 0.5, 2.0)

with ``std_l`` the standard deviation of label l's teacher logits over the rows. Labels
differ far more than classes of one softmax do: a label the teacher is very sure about
has logits spread widely (large ``|t|``), its sigmoids sit at 0 or 1 where they carry
no more than the hard label and their gradients vanish, so it needs a higher
temperature to bring the teacher's ranking of examples back; a label with logits near 0
is soft already and a high temperature would flatten it to 1/2 everywhere. Scaling by
the spread relative to the median label keeps the searched T the typical one, and the
clamp keeps every label within a factor of 2 of it. The temperatures are fixed at
``bind`` (a buffer of the loss, the same for the same batch) and do not drift during
training.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

import kdforge
from kdforge.errors import PluginError
from kdforge.interfaces import HParam, LossResult, LossStrategy, ModelOutput, PluginParams

#: Bounds of a label's temperature relative to the searched base temperature.
SCALE_MIN, SCALE_MAX = 0.5, 2.0


def label_scales(teacher_logits: torch.Tensor) -> torch.Tensor:
    """``clamp(std_l / median(std), 0.5, 2)`` per label of teacher logits ``(n, L)``.

    All ones when the median spread is 0 (a single row, or constant logits): there is
    nothing to compare the labels by.
    """
    with torch.no_grad():
        std = teacher_logits.double().std(dim=0, correction=0)
        median = std.median()
        if not bool(median > 0):
            return teacher_logits.new_ones(teacher_logits.shape[1])
        return (std / median).clamp(SCALE_MIN, SCALE_MAX).to(teacher_logits.dtype)


def bernoulli_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperatures: torch.Tensor
) -> torch.Tensor:
    """Per cell ``KL(sigmoid(t/T) || sigmoid(s/T))`` with ``T`` per label (last dim)."""
    s, t = student_logits / temperatures, teacher_logits / temperatures
    p = torch.sigmoid(t)
    cross = F.binary_cross_entropy_with_logits(s, p, reduction="none")
    entropy = F.binary_cross_entropy_with_logits(t, p, reduction="none")
    return cross - entropy


def labeled_bce(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits over the known (non-NaN) label cells."""
    known = ~torch.isnan(targets)
    cells = F.binary_cross_entropy_with_logits(outputs, torch.nan_to_num(targets), reduction="none")
    return (cells * known).sum() / known.sum().clamp_min(1)


class MultilabelKD(LossStrategy):
    """Per-label Bernoulli KL at per-label temperatures, mixed with the label loss by alpha."""

    name = "multilabel_kd"
    output_kinds = frozenset({"label_logits"})
    hyperparameters: ClassVar[tuple[HParam, ...]] = (
        HParam("temperature", 1.0, 10.0, log=True, default=2.0, help="Base sigmoid temperature T."),
        HParam("alpha", 0.0, 1.0, default=0.5, help="Weight of the soft (teacher) term."),
    )

    def __init__(
        self, params: PluginParams | None = None, hparams: dict[str, float] | None = None
    ) -> None:
        super().__init__(params, hparams)
        #: Per-label temperatures ``(L,)``, fixed by :meth:`bind`.
        self.temperatures: torch.Tensor | None = None

    def bind(self, student: ModelOutput, teacher: ModelOutput) -> None:
        """Fix the per-label temperatures from the teacher's logits on this batch.

        Binds once: a second call (the trainer's, after a caller bound it) keeps them.
        """
        if self.temperatures is not None:
            return
        if teacher.logits is None:
            raise PluginError("multilabel_kd needs logits from the teacher")
        self.temperatures = self.hparams["temperature"] * label_scales(teacher.logits)

    def label_loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task's label loss; without a task, BCE over the known label cells."""
        if self.task is None:
            return labeled_bce(outputs, labels)
        return super().label_loss(outputs, labels)

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``(1-alpha)*label + alpha*mean(T_l^2 * KL_l)`` and its two parts."""
        if student.logits is None or teacher.logits is None:
            raise PluginError("multilabel_kd needs logits from both the student and the teacher")
        if self.temperatures is None:
            self.bind(student, teacher)
        assert self.temperatures is not None
        s = student.logits
        temps = self.temperatures.to(device=s.device, dtype=s.dtype)
        kd = (bernoulli_kl(s, teacher.logits.to(s.dtype), temps) * temps**2).mean()
        label = self.label_loss(s, labels)
        alpha = self.hparams["alpha"]
        total = (1.0 - alpha) * label + alpha * kd
        return LossResult(total, {"kd": float(kd.detach()), "label": float(label.detach())})


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``multilabel_kd`` loss."""
    register("multilabel_kd", MultilabelKD)
