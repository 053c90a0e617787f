"""What :func:`kdforge.distill` returns: the search's outcome as Python objects.

Read lazily from the search folder (``summary.json``, ``leaderboard.csv``,
``pareto.csv``, ``student.pt``, ``report.html``), so a result is cheap to build and
reads what ``kdforge report`` and the CLI read.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from kdforge.api.replay import replay_config
from kdforge.api.student import load_student
from kdforge.config import SearchConfig
from kdforge.data import TaskMetric

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported inside the DataFrame properties: MLflow depends on it, but a
# result that is never tabulated should not pay for the import.

__all__ = ["DistillResult", "HtmlReport"]


@dataclass(frozen=True)
class HtmlReport:
    """A search's ``report.html``; shown inline by Jupyter, or opened from ``path``."""

    path: Path

    def _repr_html_(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def __str__(self) -> str:
        return str(self.path)


@dataclass
class DistillResult:
    """The outcome of a search, as objects.

    Attributes:
        search_dir: The search folder (everything below is read from it).
        summary: ``summary.json`` as a dict.
        config: The search config as run.
        run_id: The MLflow parent run of the search.
    """

    search_dir: Path
    summary: dict[str, Any]
    config: SearchConfig
    run_id: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @cached_property
    def student(self) -> nn.Module:
        """The chosen student, a PyTorch module in eval mode, ready to call."""
        return load_student(self.search_dir)

    @property
    def leaderboard(self) -> pd.DataFrame:
        """Every trial: sampled values, accuracy, size, status (``leaderboard.csv``)."""
        import pandas as pd

        return pd.read_csv(self.search_dir / "leaderboard.csv")

    @property
    def pareto(self) -> pd.DataFrame:
        """The Pareto front of the search's objectives (empty with a single objective)."""
        import pandas as pd

        path = self.search_dir / "pareto.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    @property
    def metric(self) -> TaskMetric:
        """The task's metric the search selected by (accuracy for classification)."""
        return TaskMetric.of_summary(self.summary)

    @property
    def teacher_metrics(self) -> dict[str, Any]:
        """The teacher's ``val_<metric>``, ``test_<metric>`` (``val_acc``...) and ``params``."""
        metric = self.metric
        s = metric.canonical(self.summary)
        return {
            metric.val: s.get("teacher_val_acc"),
            metric.test: s.get("teacher_test_acc"),
            "params": s.get("teacher_params"),
        }

    @property
    def student_metrics(self) -> dict[str, Any]:
        """The student's metric (``val_acc``, ``test_acc``...), size, MACs and latency."""
        metric = self.metric
        s = metric.canonical(self.summary)
        out = {
            metric.val: s.get("student_val_acc"),
            metric.test: s.get("student_test_acc"),
            "params": s.get("student_params"),
            "macs": s.get("student_macs"),
            "size_bytes": s.get("student_size_bytes"),
            "arch": s.get("best_arch"),
            "lr": s.get("best_lr"),
            "trial": s.get("best_trial"),
        }
        out.update({k: v for k, v in s.items() if k.startswith("student_latency")})
        return out

    @property
    def distillation_gain(self) -> float | None:
        """Test accuracy distilled minus from scratch, same architecture (None: no baseline)."""
        value = self.summary.get("distillation_gain")
        return None if value is None else float(value)

    @property
    def compression(self) -> float:
        """Teacher parameters / student parameters."""
        return float(self.summary["compression_ratio"])

    @property
    def speedup(self) -> float | None:
        """Teacher time / student time per batch, in PyTorch on this machine."""
        value = self.summary.get("speedup")
        return None if value is None else float(value)

    @property
    def model_uri(self) -> str | None:
        """The registered ONNX student (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``)."""
        return self.summary.get("model_uri")

    @property
    def onnx_path(self) -> Path | None:
        """The exported student file in the search folder (None when export is off)."""
        value = self.summary.get("export_path")
        return Path(value) if value else None

    def report(self) -> HtmlReport:
        """The search's HTML report; Jupyter renders it inline."""
        return HtmlReport(self.search_dir / "report.html")

    def to_config(self, path: str | Path | None = None) -> str:
        """The YAML that re-runs this search with ``kdforge search``.

        In-memory data is written to ``<search_dir>/replay/data.npz`` (read by the
        ``arrays`` dataset, same splits); an in-memory ``nn.Module`` teacher to
        ``replay/teacher.ts`` (TorchScript, read by the ``checkpoint`` teacher), a
        Hugging Face model with ``save_pretrained``. A teacher that cannot be saved
        without pickle (a plain function, an untraceable module) is left as a
        placeholder the YAML's first lines say to replace.

        Args:
            path: Also write the YAML there.
        """
        text = replay_config(self.config, self.search_dir)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def _repr_html_(self) -> str:
        rows = [
            ("search folder", str(self.search_dir)),
            (f"teacher test {self.metric.name}", _fmt(self.teacher_metrics[self.metric.test])),
            (f"student test {self.metric.name}", _fmt(self.student_metrics[self.metric.test])),
            ("student params", str(self.student_metrics["params"])),
            ("compression", f"{self.compression:.1f}x"),
            ("speed-up", "-" if self.speedup is None else f"{self.speedup:.2f}x"),
            ("distillation gain", _fmt(self.distillation_gain)),
            ("model URI", str(self.model_uri or "-")),
            ("MLflow run", str(self.run_id or "-")),
        ]
        cells = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return f"<table><caption>kdforge: {html.escape(self.config.name)}</caption>{cells}</table>"

    def __repr__(self) -> str:
        return (
            f"DistillResult(search_dir={str(self.search_dir)!r}, "
            f"student_{self.metric.test}={_fmt(self.student_metrics[self.metric.test])}, "
            f"compression={self.compression:.1f}x, model_uri={self.model_uri!r})"
        )


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4f}"
