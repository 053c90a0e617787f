"""The last step of a search: speed-up, registry description, plots, reports, artifacts.

Runs inside the MLflow parent run after :func:`kdforge.search.finalize.finalize` (which
exported, registered and offered the student to the alias). It adds to the summary
and to the parent run:

* the measured speed-up of the student over the teacher (metrics ``speedup``, ...);
* the registered version's description (:mod:`kdforge.tracking.model_card`);
* ``plots/`` (accuracy vs size, Pareto front, optimisation history), ``best_config.yaml``,
  ``report.md`` and ``report.html`` as artifacts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from kdforge.data import DataSplits
    from kdforge.report.leaderboard import TrialRow
    from kdforge.search.driver import SearchPlan

__all__ = ["SPEEDUP_ROWS", "publish_search"]

#: Test rows in the batch the speed-up is measured on.
SPEEDUP_ROWS = 256


def _student(
    plan: SearchPlan, best: TrialRow, splits: DataSplits, search_dir: Path
) -> torch.nn.Module:
    from kdforge.checkpoint import load_checkpoint

    model = plan.space.build(best.arch, splits.info)
    model.load_state_dict(load_checkpoint(search_dir / "student.pt")["state_dict"])
    return model.eval()


def _speedup(
    plan: SearchPlan, best: TrialRow, splits: DataSplits, search_dir: Path
) -> dict[str, float]:
    from kdforge.objectives.speedup import measure_speedup

    test_x = splits.test.x
    rows = min(SPEEDUP_ROWS, len(test_x))
    inputs = (
        test_x[:rows] if isinstance(test_x, torch.Tensor) else test_x.read_rows(list(range(rows)))
    )
    return measure_speedup(plan.teacher, _student(plan, best, splits, search_dir), inputs)


def publish_search(
    plan: SearchPlan,
    splits: DataSplits,
    rows: list[TrialRow],
    best: TrialRow,
    summary: dict[str, Any],
    search_dir: Path,
    emit: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Complete ``summary`` and log the reports of a finished search to the active run.

    Args:
        plan: The search plan (config, teacher, space).
        splits: The data (the test split times the speed-up).
        rows: The leaderboard rows.
        best: The chosen trial.
        summary: The summary so far; updated in place.
        search_dir: The search folder (files are written there).
        emit: Where progress lines go.

    Returns:
        Artifact name -> file written.
    """
    import mlflow

    from kdforge.report.best_config import write_best_config
    from kdforge.report.plots import make_plots
    from kdforge.report.render import ReportData, render_html, render_markdown
    from kdforge.tracking.model_card import describe_registered_version
    from kdforge.tracking.run_metadata import kdforge_version

    config = plan.config
    summary.update(
        {
            "kdforge_version": kdforge_version(),
            "tracking_uri": plan.tracking_uri,
            "teacher": config.teacher.name,
            "dataset": config.dataset.name,
        }
    )
    speed = _speedup(plan, best, splits, search_dir)
    summary.update(speed)
    mlflow.log_metrics(speed)
    emit(
        f"speed-up: {speed['speedup']:.2f}x (teacher {speed['teacher_batch_ms']:.3f} ms, student "
        f"{speed['student_batch_ms']:.3f} ms per batch of {int(speed['speedup_batch_size'])})"
    )
    name, version = summary.get("registered_model_name"), summary.get("registered_model_version")
    if name and version:
        promotion = summary.get("promotion") or {}
        alias = promotion.get("alias") if promotion.get("promoted", True) else None
        describe_registered_version(str(name), str(version), summary, alias=alias)
    files: dict[str, Path] = {}
    objectives = [o.name for o in getattr(config, "objectives", [])]
    pareto_png = summary.get("pareto_png")  # drawn by the objectives step, if it ran
    try:
        plots = make_plots(
            rows,
            search_dir / "plots",
            best=best,
            teacher_acc=summary.get("teacher_val_acc"),
            objectives=objectives,
            pareto_png=Path(pareto_png) if pareto_png else None,
        )
    except Exception as exc:  # matplotlib's errors vary; a plot must not lose the search
        emit(f"plots not drawn: {type(exc).__name__}: {exc}")
        plots = {}
    files.update(plots)
    files["best_config"] = write_best_config(
        config, best, search_dir / "best_config.yaml", search_dir=search_dir
    )
    data = ReportData(search_dir, rows, summary, objectives)
    files["report_md"] = search_dir / "report.md"
    files["report_md"].write_text(render_markdown(data, plots), encoding="utf-8")
    files["report_html"] = search_dir / "report.html"
    files["report_html"].write_text(render_html(data, plots), encoding="utf-8")
    if (search_dir / "plots").is_dir():
        mlflow.log_artifacts(str(search_dir / "plots"), artifact_path="plots")
    for key in ("best_config", "report_md", "report_html"):
        mlflow.log_artifact(str(files[key]))
    emit(f"report: {files['report_md']} (plots, best_config.yaml and report.html beside it)")
    return files
