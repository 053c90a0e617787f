"""The last steps of a search: the measured speed-up, then the reports and their artifacts.

Run inside the MLflow parent run after the student was exported and registered:

* :func:`measure_student_speedup`: the student against the teacher, timed side by side
  on test rows (metrics ``speedup``, ...);
* :func:`publish_reports`: the registered version's description
  (:mod:`kdforge.tracking.model_card`), ``plots/`` (accuracy vs size, Pareto front,
  optimisation history), ``best_config.yaml``, ``report.md`` and ``report.html``, logged
  as artifacts of the parent run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from kdforge import progress
from kdforge.config import SearchConfig
from kdforge.data import Inputs
from kdforge.interfaces import Teacher
from kdforge.objectives.speedup import format_speedup, measure_speedup
from kdforge.report.best_config import write_best_config
from kdforge.report.leaderboard import TrialRow
from kdforge.report.plots import make_plots
from kdforge.report.render import ReportData, render_html, render_markdown
from kdforge.tracking.model_card import describe_registered_version
from kdforge.tracking.store import log_files, log_folder, log_numeric_metrics

__all__ = ["SPEEDUP_ROWS", "measure_student_speedup", "publish_reports"]

#: Test rows in the batch the speed-up is measured on.
SPEEDUP_ROWS = 256


def measure_student_speedup(
    teacher: Teacher,
    student: nn.Module,
    test_x: Inputs,
    emit: Callable[[str], None],
    teacher_x: Inputs | None = None,
) -> dict[str, float]:
    """Time teacher and student side by side on test rows; log and print the speed-up.

    ``teacher_x`` holds the same rows as the teacher reads them, when it reads its own
    view (``Split.teacher_x``).
    """
    count = min(SPEEDUP_ROWS, len(test_x))
    inputs = test_x[:count]  # a tensor for streamed inputs too
    teacher_inputs = None if teacher_x is None else teacher_x[:count]
    with progress.phase("speed-up", emit=emit, plain=False):  # its result line follows
        speed = measure_speedup(teacher, student, inputs, teacher_inputs=teacher_inputs)
    log_numeric_metrics(speed)
    emit(
        f"speed-up: {format_speedup(speed)} (PyTorch eager, 1 thread); median teacher "
        f"{speed['teacher_batch_ms']:.3f} ms, student {speed['student_batch_ms']:.3f} ms per "
        f"batch of {int(speed['speedup_batch_size'])}"
    )
    return speed


def publish_reports(
    config: SearchConfig,
    rows: list[TrialRow],
    best: TrialRow,
    summary: Mapping[str, Any],
    search_dir: Path,
    emit: Callable[[str], None] = print,
) -> dict[str, Path]:
    """Describe the registered version, write the reports and log them to the active run.

    Args:
        config: The search config.
        rows: The leaderboard rows.
        best: The chosen trial.
        summary: The search's summary (read, not changed).
        search_dir: The search folder (files are written there).
        emit: Where progress lines go.

    Returns:
        Artifact name -> file written.
    """
    name, version = summary.get("registered_model_name"), summary.get("registered_model_version")
    if name and version:
        promotion = summary.get("promotion") or {}
        alias = promotion.get("alias") if promotion.get("promoted", True) else None
        describe_registered_version(str(name), str(version), dict(summary), alias=alias)
    objectives: list[str] = [o.name for o in config.objectives]
    pareto_png = summary.get("pareto_png")  # drawn by the objective step, if it ran
    try:
        plots = make_plots(
            rows,
            search_dir / "plots",
            best=best,
            teacher_acc=summary.get("teacher_reference_acc", summary.get("teacher_val_acc")),
            objectives=objectives,
            pareto_png=Path(pareto_png) if pareto_png else None,
        )
    except Exception as exc:  # matplotlib's errors vary; a plot must not lose the search
        emit(f"plots not drawn: {type(exc).__name__}: {exc}")
        plots = {}
    files: dict[str, Path] = dict(plots)
    files["best_config"] = write_best_config(
        config, best, search_dir / "best_config.yaml", search_dir=search_dir
    )
    data = ReportData(search_dir, rows, dict(summary), objectives)
    files["report_md"] = search_dir / "report.md"
    files["report_md"].write_text(render_markdown(data, plots), encoding="utf-8")
    files["report_html"] = search_dir / "report.html"
    files["report_html"].write_text(render_html(data, plots), encoding="utf-8")
    if (search_dir / "plots").is_dir():
        log_folder(search_dir / "plots", under="plots")
    log_files(files["best_config"], files["report_md"], files["report_html"])
    emit(f"report: {files['report_md']} (plots, best_config.yaml and report.html beside it)")
    return files
