"""Reports of a search: ``report.md``, a self-contained ``report.html``, terminal text.

Everything is rendered from what a search folder keeps (``leaderboard.csv``,
``summary.json``, ``config.yaml``), so ``kdforge report SEARCH_DIR`` can rebuild the
reports and plots at any time. The HTML file embeds its plots as base64 PNG and its
style inline: it can be mailed or attached to a ticket as one file.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from kdforge.data import ACCURACY, TaskMetric
from kdforge.errors import ConfigError
from kdforge.report.leaderboard import TrialRow, format_table
from kdforge.report.plots import make_plots
from kdforge.wording import plural, trial_name

__all__ = [
    "ReportData",
    "baseline_setting",
    "load_report_data",
    "read_leaderboard",
    "render_html",
    "render_markdown",
    "report_search_dir",
    "terminal_summary",
]

_TOP = 15


@dataclasses.dataclass
class ReportData:
    """What a report shows, read from a search folder or handed over by the search."""

    search_dir: Path
    rows: list[TrialRow]
    summary: dict[str, Any]
    objectives: list[str]

    @property
    def best(self) -> TrialRow | None:
        """The chosen trial (``summary['best_trial']``), if any."""
        number = self.summary.get("best_trial")
        return next((r for r in self.rows if r.number == number), None)


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _typed(kind: str, text: str) -> Any:
    if text == "":
        return "" if kind.startswith("str") else None
    if kind.startswith("int"):
        return int(float(text))
    if kind.startswith("float"):
        return float(text)
    return text


def read_leaderboard(path: Path, higher_is_better: bool = True) -> list[TrialRow]:
    """Read ``leaderboard.csv`` back into rows (unknown columns are ignored).

    The task's metric is the ``val_<name>``/``test_<name>`` column pair (``val_acc``);
    ``higher_is_better`` is its direction (``summary.json`` keeps it).

    Raises:
        ConfigError: the file is missing or not a kdforge leaderboard.
    """
    if not path.is_file():
        raise ConfigError(
            f"{path.parent} is not a search folder: {path.name} is missing",
            hint="pass output_dir/<name>/<timestamp> of a search (it holds leaderboard.csv)",
        )
    kinds = {f.name: str(f.type) for f in dataclasses.fields(TrialRow)}
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "number" not in reader.fieldnames:
            raise ConfigError(f"{path}: not a kdforge leaderboard (no 'number' column)")
        metric = _leaderboard_metric(reader.fieldnames, higher_is_better)
        renamed = {metric.val: "val_acc", metric.test: "test_acc"}
        for raw in reader:
            values: dict[str, Any] = {"loss_hparams": {}, "arch": {}}
            for key, text in raw.items():
                if key is None:
                    continue
                key = renamed.get(key, key)
                text = text or ""
                if key.startswith("loss.") and text:
                    values["loss_hparams"][key[5:]] = float(text)
                elif key.startswith("student.") and text:
                    values["arch"][key[8:]] = _scalar(text)
                elif key in kinds and kinds[key] not in ("dict[str, float]", "dict[str, Any]"):
                    values[key] = _typed(kinds[key], text)
            rows.append(TrialRow(**values, metric=metric))
    return rows


def _leaderboard_metric(columns: Sequence[str], higher_is_better: bool) -> TaskMetric:
    """The task's metric of a leaderboard: its ``val_<name>``/``test_<name>`` columns."""
    for column in columns:
        name = column.removeprefix("val_")
        if column.startswith("val_") and name != "loss" and f"test_{name}" in columns:
            return TaskMetric(name, higher_is_better)
    return ACCURACY


def load_report_data(search_dir: str | Path) -> ReportData:
    """Read a search folder: leaderboard, summary (if the search finished) and objectives."""
    folder = Path(search_dir)
    if not folder.is_dir():
        raise ConfigError(f"search folder not found: {folder}")
    summary_file = folder / "summary.json"
    raw_summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    # The renderers read the _acc keys and name them after the summary's metric.
    summary = TaskMetric.of_summary(raw_summary).canonical(raw_summary)
    rows = read_leaderboard(
        folder / "leaderboard.csv", bool(summary.get("metric_higher_is_better", True))
    )
    objectives: list[str] = []
    config_file = folder / "config.yaml"
    if config_file.is_file():
        raw = yaml.safe_load(config_file.read_text()) or {}
        objectives = [
            str(o.get("name")) for o in raw.get("objectives") or [] if isinstance(o, dict)
        ]
    return ReportData(folder, rows, summary, objectives)


def _fmt(value: Any, pattern: str = "{:.4f}") -> str:
    if value is None or isinstance(value, bool):
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    if isinstance(value, int | float):
        return pattern.format(value)
    return str(value)


def _cost(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{int(value):,}" if float(value).is_integer() else f"{value:.4g}"
    return "-"


def baseline_setting(lr: Any) -> str:
    """How the baseline's two sides were trained, said wherever the gain is shown.

    The scratch runs reuse the learning rate the search tuned for the distilled
    student: a fair, fixed choice (the sides differ in the teacher alone), but one a
    reader should see next to the number.
    """
    rate = f"lr {lr:.3g}" if isinstance(lr, int | float) else "lr"
    return f"distilled and from scratch with the chosen trial's {rate}, epochs and batch size"


def _headline(summary: dict[str, Any]) -> list[str]:
    """Result lines shared by the terminal, Markdown and HTML reports."""
    if not summary:
        return ["the search did not finish: no student was chosen (see the leaderboard)"]
    metric = TaskMetric.of_summary(summary)
    lines = [
        f"teacher: {metric.test} {_fmt(summary.get('teacher_test_acc'))}, "
        f"{_fmt(summary.get('teacher_params'), '{:,}')} params",
        f"student: {metric.test} {_fmt(summary.get('student_test_acc'))}, "
        f"{_fmt(summary.get('student_params'), '{:,}')} params (trial "
        f"{_fmt(summary.get('best_trial'), '{:03d}')}"
        + (f", {summary['best_arch_text']})" if summary.get("best_arch_text") else ")"),
        f"compression: {_fmt(summary.get('compression_ratio'), '{:.1f}')}x fewer parameters",
    ]
    if "speedup" in summary:
        spread = ""
        if "speedup_low" in summary and "speedup_high" in summary:
            spread = (
                f"{_fmt(summary['speedup_low'], '{:.1f}')}-"
                f"{_fmt(summary['speedup_high'], '{:.1f}')} middle half of "
                f"{_fmt(summary.get('speedup_repeats'), '{:.0f}')} repeats, "
            )
        lines.append(
            f"speed-up: {_fmt(summary['speedup'], '{:.1f}')}x ({spread}PyTorch, batch of "
            f"{_fmt(summary.get('speedup_batch_size'), '{:.0f}')})"
        )
    if "distillation_gain" in summary:
        seeds = len(summary.get("scratch_test_acc_runs") or [])
        each = f"{plural(seeds, 'seed')} each: " if seeds else ""
        lines.append(
            f"distillation gain: {_gain_text(summary)} "
            f"(same architecture, {each}distilled {_fmt(summary.get('distilled_test_acc_mean'))}"
            f" vs from scratch {_fmt(summary.get('scratch_test_acc_mean'))}; "
            f"{baseline_setting(summary.get('best_lr'))})"
        )
    promotion = summary.get("promotion")
    if isinstance(promotion, dict):
        lines.append(f"registry: {_promotion_text(promotion)}")
    elif summary.get("registered_model_name"):
        lines.append(
            f"registry: {summary['registered_model_name']} version "
            f"{summary.get('registered_model_version')}"
        )
    lines += [str(line) for line in summary.get("range_warnings") or []]
    return lines


def _gain_text(summary: dict[str, Any]) -> str:
    gain = summary.get("distillation_gain")
    if not isinstance(gain, int | float):
        return "-"
    return TaskMetric.of_summary(summary).gain_text(float(gain))


def _promotion_text(promotion: dict[str, Any]) -> str:
    name, alias = promotion.get("name"), promotion.get("alias")
    winner = promotion.get("champion_version")
    candidate = promotion.get("candidate_version")
    head = f"{name} version {candidate} registered; @{alias} -> version {winner}"
    return f"{head} ({promotion.get('policy')}: {promotion.get('reason')})"


def _leaderboard_cells(
    rows: Sequence[TrialRow], best: TrialRow | None
) -> tuple[list[str], list[list[str]]]:
    hparams = sorted({k for r in rows for k in r.loss_hparams})
    costs = [
        c
        for c in ("macs", "size_bytes", "latency_ms")
        if any(getattr(r, c, None) is not None for r in rows)
    ]
    header = [
        "",
        "trial",
        "status",
        "arch",
        "params",
        *costs,
        "val_acc",
        "test_acc",
        *hparams,
        "lr",
        "epochs",
    ]
    ordered = sorted(
        rows,
        key=lambda r: (
            r.status == "failed",
            -(r.val_acc if r.val_acc is not None and math.isfinite(r.val_acc) else -1.0),
        ),
    )
    body = []
    for row in ordered[:_TOP]:
        body.append(
            [
                "*" if best is not None and row.number == best.number else "",
                f"{row.number:03d}",
                row.status,
                row.architecture,
                _fmt(row.params, "{:,}"),
                *[_cost(getattr(row, c, None)) for c in costs],
                _fmt(row.val_acc),
                _fmt(row.test_acc),
                *[_fmt(row.loss_hparams.get(h), "{:.3g}") for h in hparams],
                _fmt(row.lr, "{:.3g}"),
                str(row.epochs),
            ]
        )
    return header, body


def render_markdown(data: ReportData, plots: dict[str, Path]) -> str:
    """``report.md``: result, registry outcome, leaderboard, plots (relative links)."""
    summary = data.summary
    title = summary.get("search") or data.search_dir.parent.name
    out = [f"# kdforge search `{title}`", ""]
    if summary.get("parent_run_id"):
        out.append(f"MLflow parent run `{summary['parent_run_id']}` · folder `{data.search_dir}`")
        out.append("")
    out += ["## Result", ""]
    out += [f"- {line}" for line in _headline(summary)]
    out.append("")
    header, body = _leaderboard_cells(data.rows, data.best)
    out += [
        f"## Leaderboard ({plural(len(data.rows), 'trial')}, best {min(_TOP, len(body))} shown)",
        "",
    ]
    out.append("| " + " | ".join(header) + " |")
    out.append("|" + "---|" * len(header))
    out += ["| " + " | ".join(cells) + " |" for cells in body]
    failed = [r for r in data.rows if r.status == "failed"]
    if failed:
        out.append("")
        out += [f"- {trial_name(r.number)} failed: {r.error}" for r in failed[:10]]
    out += ["", "## Plots", ""]
    for name, path in plots.items():
        out.append(f"![{name.replace('_', ' ')}]({path.relative_to(data.search_dir).as_posix()})")
    if (data.search_dir / "best_config.yaml").exists():
        out += [
            "",
            "## Train the chosen student again",
            "",
            "```",
            "kdforge search best_config.yaml",
            "```",
        ]
    return "\n".join(out) + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}th{background:#f3f3f3}img{max-width:100%;margin:1em 0}"
    "code{background:#f3f3f3}"
)


def render_html(data: ReportData, plots: dict[str, Path]) -> str:
    """A self-contained HTML report: inline style, plots embedded as base64 PNG."""
    summary = data.summary
    esc = html.escape
    title = esc(str(summary.get("search") or data.search_dir.parent.name))
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>kdforge search {title}</title>',
        f"<style>{_CSS}</style></head><body>",
        f"<h1>kdforge search <code>{title}</code></h1>",
    ]
    if summary.get("parent_run_id"):
        parts.append(f"<p>MLflow parent run <code>{esc(str(summary['parent_run_id']))}</code></p>")
    parts.append("<h2>Result</h2><ul>")
    parts += [f"<li>{esc(line)}</li>" for line in _headline(summary)]
    parts.append("</ul>")
    header, body = _leaderboard_cells(data.rows, data.best)
    parts.append(f"<h2>Leaderboard ({plural(len(data.rows), 'trial')})</h2><table><tr>")
    parts += [f"<th>{esc(h)}</th>" for h in header]
    parts.append("</tr>")
    for cells in body:
        parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    parts.append("</table><h2>Plots</h2>")
    for name, path in plots.items():
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f'<img alt="{esc(name)}" src="data:image/png;base64,{encoded}">')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def terminal_summary(data: ReportData) -> str:
    """The leaderboard table and the result lines, for the terminal."""
    lines = [format_table(data.rows, data.best), ""]
    lines += _headline(data.summary)
    return "\n".join(lines)


def report_search_dir(search_dir: str | Path, emit: Callable[[str], None] = print) -> Path:
    """``kdforge report``: print the leaderboard and summary, write ``report.html``.

    The plots are redrawn from ``leaderboard.csv`` into ``plots/``.

    Returns:
        The path of ``report.html``.
    """

    data = load_report_data(search_dir)
    plots = make_plots(
        data.rows,
        data.search_dir / "plots",
        best=data.best,
        teacher_acc=data.summary.get("teacher_reference_acc", data.summary.get("teacher_val_acc")),
        objectives=data.objectives,
        pareto_png=data.search_dir / "pareto.png",
    )
    emit(terminal_summary(data))
    target = data.search_dir / "report.html"
    target.write_text(render_html(data, plots), encoding="utf-8")
    emit(f"wrote {target}")
    return target
