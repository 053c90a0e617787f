"""Task ``regression``: one or several real-valued targets per example.

Targets are float32 ``(n, R)``; a row of NaN marks an example without a label. The
targets are standardised on the training rows' mean and standard deviation before
anything trains (``standardize``), so that one learning-rate range and one loss scale
fit prices and probabilities alike; a teacher's predictions are standardised the same
way. Metrics are reported in the targets' own units: RMSE and MAE (averaged over
targets), and R² (selection, higher is better, the same for every unit). The exported
model undoes the standardisation, so it serves predictions in those units.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import kdforge
from kdforge.data import DataInfo, DataSplits, Split
from kdforge.errors import DataError
from kdforge.interfaces import PluginParams, Task
from kdforge.plugins.tasks._metrics import r2_score
from kdforge.plugins.tasks._real_targets import check_float_rows, labeled_cells


class RegressionParams(PluginParams):
    """Parameters of the ``regression`` task."""

    loss: Literal["mse", "huber"] = Field(
        "mse",
        description="Label loss: squared error, or Huber (robust to outlying targets; "
        "quadratic within huber_delta standard deviations of the target).",
    )
    huber_delta: float = Field(
        1.0, gt=0, description="Where Huber turns from quadratic to linear, in standard deviations."
    )
    standardize: bool = Field(
        True,
        description="Standardise targets (and teacher predictions) on the training rows' "
        "statistics.",
    )


class Destandardize(nn.Module):
    """``y = x * std + mean`` per target: standardised outputs back to the data's units."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the standardisation of ``x`` ``(n, R)``."""
        return x * self.std + self.mean


class Regression(Task):
    """Real-valued targets: R outputs, MSE (or Huber) on standardised targets, R²."""

    name = "regression"
    Params = RegressionParams
    output_kind = "values"
    metric = "r2"
    higher_is_better = True
    metric_names = ("r2", "rmse", "mae")
    default_loss = "regression_kd"
    output_name = "values"

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None

    @property
    def settings(self) -> RegressionParams:
        """The validated params."""
        assert isinstance(self.params, RegressionParams)
        return self.params

    def num_outputs(self, info: DataInfo) -> int:
        """The number of targets."""
        return info.num_classes

    def check(self, splits: DataSplits) -> None:
        """Targets must be float ``(n, R)`` rows; the training split needs labeled rows."""
        check_float_rows(self.name, splits, splits.info.num_classes, binary=False)
        if not bool(self.labeled(splits.train.y).any()):
            raise DataError("task regression: the train split has no labeled row")

    def prepare(self, splits: DataSplits) -> DataSplits:
        """Standardise every split's targets on the training rows' statistics."""
        y = splits.train.y[self.labeled(splits.train.y)].double()
        mean = torch.nanmean(y, dim=0)
        std = torch.sqrt(torch.nanmean((y - mean) ** 2, dim=0))
        # A constant target keeps scale 1: dividing by 0 would turn it into NaN.
        std = torch.where(std > 0, std, torch.ones_like(std))
        if not self.settings.standardize:
            mean, std = torch.zeros_like(mean), torch.ones_like(std)
        self.mean, self.std = mean.float(), std.float()
        shift, scale = self.mean, self.std

        def scaled(split: Split | None) -> Split | None:
            if split is None:
                return None
            return Split(split.x, (split.y - shift) / scale, split.teacher_x)

        return DataSplits(
            info=splits.info,
            train=scaled(splits.train),  # type: ignore[arg-type]
            val=scaled(splits.val),  # type: ignore[arg-type]
            test=scaled(splits.test),  # type: ignore[arg-type]
            transfer=scaled(splits.transfer),
        )

    def state(self) -> dict[str, Any]:
        """The training targets' mean and standard deviation per target."""
        if self.mean is None or self.std is None:
            return {}
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore the statistics :meth:`prepare` learned."""
        if state:
            self.mean = torch.tensor(state["mean"], dtype=torch.float32)
            self.std = torch.tensor(state["std"], dtype=torch.float32)

    def _scale(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean is None or self.std is None:
            raise DataError("task regression: used before prepare() saw the training targets")
        return self.mean.to(device), self.std.to(device)

    def prepare_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """A teacher's predictions (in the data's units) standardised like the targets."""
        mean, std = self._scale(outputs.device)
        return (outputs - mean) / std

    def labeled(self, targets: torch.Tensor) -> torch.Tensor:
        """Rows with at least one target known (the others are skipped cell by cell)."""
        return labeled_cells(targets).any(dim=1)

    def label_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """MSE (or Huber) over the known target cells."""
        known = labeled_cells(targets)
        filled = torch.where(known, targets, outputs.detach())
        if self.settings.loss == "huber":
            cells = F.huber_loss(outputs, filled, reduction="none", delta=self.settings.huber_delta)
        else:
            cells = F.mse_loss(outputs, filled, reduction="none")
        return (cells * known).sum() / known.sum().clamp_min(1)

    def soft_target(self, outputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The teacher's predictions themselves (a temperature has no meaning here)."""
        return outputs

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """R², RMSE and MAE per target over its known cells, averaged over targets;
        RMSE and MAE in the targets' units. Targets without a known cell are left out."""
        targets = targets.to(outputs.device)
        _, std = self._scale(outputs.device)
        known = labeled_cells(targets)
        r2, rmse, mae = [], [], []
        for column in range(targets.shape[1]):
            rows = known[:, column]
            if not bool(rows.any()):
                continue
            predicted = outputs[rows, column].double().unsqueeze(1)
            truth = targets[rows, column].double().unsqueeze(1)
            error = (predicted - truth) * float(std[column])
            r2.append(r2_score(predicted, truth))
            rmse.append(float(torch.sqrt((error**2).mean())))
            mae.append(float(error.abs().mean()))
        if not r2:
            return dict.fromkeys(self.metric_names, float("nan"))
        return {
            "r2": sum(r2) / len(r2),
            "rmse": sum(rmse) / len(rmse),
            "mae": sum(mae) / len(mae),
        }

    def output_scale(self) -> float:
        """The largest target standard deviation: the head multiplies errors by it."""
        _, std = self._scale(torch.device("cpu"))
        return float(std.max())

    def output_head(self) -> nn.Module:
        """Undoes the standardisation: the served model predicts in the data's units."""
        mean, std = self._scale(torch.device("cpu"))
        return Destandardize(mean, std)


@kdforge.hookimpl
def register_tasks(register: kdforge.Register) -> None:
    """Register the ``regression`` task."""
    register("regression", Regression)
