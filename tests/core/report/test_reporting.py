"""Reports and plots of a search folder: report.md, self-contained report.html, PNGs.

A synthetic search folder (leaderboard.csv written by the leaderboard module, a
summary.json as a finished search writes it) stands in for a real search, so these
tests run in about a second; the real-server test covers a search's own reports.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from kdforge.report.leaderboard import TrialRow, write_csv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows() -> list[TrialRow]:
    def row(number: int, status: str, params: int | None, acc: float | None, **kw) -> TrialRow:
        return TrialRow(
            number=number,
            trial_id=f"t{number}",
            status=status,
            params=params,
            val_acc=acc,
            test_acc=acc,
            epochs=4 if status == "finished" else 2,
            lr=0.01,
            loss_hparams={"temperature": 2.0 + number, "alpha": 0.5},
            arch={"depth": 1, "width_0": 8 * (number + 1), "dropout": 0.1},
            **kw,
        )

    return [
        row(0, "finished", 1_000, 0.80),
        row(1, "finished", 5_000, 0.92, arch_text="mlp 1x[16]"),
        row(2, "stopped", 300, 0.40),
        row(3, "finished", 20_000, 0.91),  # dominated by trial 1
        row(4, "failed", None, None, error="RuntimeError: boom"),
    ]


@pytest.fixture
def search_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "runs" / "demo" / "20261128-000000"
    folder.mkdir(parents=True)
    write_csv(_rows(), folder / "leaderboard.csv")
    summary = {
        "search": "demo",
        "teacher_test_acc": 0.95,
        "teacher_val_acc": 0.94,
        "teacher_params": 100_000,
        "student_test_acc": 0.92,
        "student_params": 5_000,
        "compression_ratio": 20.0,
        "best_trial": 1,
        "speedup": 3.5,
        "speedup_low": 3.24,
        "speedup_high": 3.91,
        "speedup_repeats": 15.0,
        "speedup_batch_size": 256.0,
        "scratch_test_acc_runs": [0.9, 0.91, 0.914],
        "best_lr": 0.0031,
        "distillation_gain": 0.012,
        "distilled_test_acc_mean": 0.92,
        "scratch_test_acc_mean": 0.908,
        "parent_run_id": "abc123",
        "promotion": {
            "name": "demo-student",
            "alias": "champion",
            "policy": "if_better",
            "candidate_version": "3",
            "previous_version": "2",
            "promoted": False,
            "champion_version": "2",
            "reason": "test accuracy 0.9100 (v3) < 0.9300 (v2): version 2 keeps @champion",
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.yaml").write_text(
        "name: demo\nobjectives: [{name: val_acc}, {name: params}]\n"
    )
    return folder


def test_leaderboard_csv_reads_back_into_the_same_rows(search_dir: Path) -> None:
    from kdforge.report.render import read_leaderboard

    rows = read_leaderboard(search_dir / "leaderboard.csv")
    original = _rows()
    assert [r.number for r in rows] == [r.number for r in original]
    for got, want in zip(rows, original, strict=True):
        assert (got.status, got.params, got.val_acc, got.epochs) == (
            want.status,
            want.params,
            want.val_acc,
            want.epochs,
        )
        assert got.loss_hparams == want.loss_hparams and got.arch == want.arch
    assert rows[4].error == "RuntimeError: boom" and rows[4].params is None


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    from kdforge.report.pareto import non_dominated

    points = [(0.80, 1_000), (0.92, 5_000), (0.40, 300), (0.91, 20_000), (0.92, 5_000)]
    assert non_dominated(points, ["max", "min"]) == [0, 1, 2, 4]


def test_plots_are_png_files(search_dir: Path) -> None:
    from kdforge.report.plots import make_plots
    from kdforge.report.render import read_leaderboard

    rows = read_leaderboard(search_dir / "leaderboard.csv")
    plots = make_plots(rows, search_dir / "plots", best=rows[1], teacher_acc=0.94)
    assert set(plots) == {"accuracy_vs_size", "pareto", "history"}
    for path in plots.values():
        assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 5_000


def test_an_existing_pareto_plot_is_reused(search_dir: Path) -> None:
    from kdforge.report.plots import make_plots
    from kdforge.report.render import read_leaderboard

    theirs = search_dir / "pareto.png"
    theirs.write_bytes(PNG_MAGIC + b"drawn by the objectives step")
    plots = make_plots(
        read_leaderboard(search_dir / "leaderboard.csv"), search_dir / "plots", pareto_png=theirs
    )
    assert plots["pareto"] == theirs and not (search_dir / "plots" / "pareto.png").exists()


def test_markdown_report_says_result_and_who_won(search_dir: Path) -> None:
    from kdforge.report.plots import make_plots
    from kdforge.report.render import load_report_data, render_markdown

    data = load_report_data(search_dir)
    text = render_markdown(data, make_plots(data.rows, search_dir / "plots", best=data.best))
    assert "# kdforge search `demo`" in text and "abc123" in text
    assert "compression: 20.0x" in text
    assert "speed-up: 3.5x (3.2-3.9 middle half of 15 repeats" in text
    assert "distillation gain: +1.20 points" in text
    # The baseline's fair-but-chosen setting is stated where the gain is read.
    assert "3 seeds each" in text and "from scratch with the chosen trial's lr 0.0031" in text
    assert "@champion -> version 2" in text and "version 2 keeps @champion" in text
    # The chosen trial is starred; the arch column holds the space's description (kept
    # in leaderboard.csv), or else a compact rendering of the sampled values.
    assert "| * | 001 | finished | mlp 1x[16] | 5,000 |" in text
    assert "| 000 | finished | depth=1 width[8] dropout=0.1 | 1,000 |" in text
    assert "trial 004 failed: RuntimeError: boom" in text
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (search_dir / link).is_file()


def test_cli_report_prints_and_writes_self_contained_html(search_dir: Path, capsys) -> None:
    from kdforge.cli import main

    assert main(["report", str(search_dir)]) == 0
    out = capsys.readouterr().out
    assert "teacher: test_acc 0.9500" in out and "compression: 20.0x" in out
    assert re.search(r"\*\s+001\s+finished", out)  # leaderboard, chosen trial marked
    html = (search_dir / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) == 3
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    # Self-contained: nothing is fetched from elsewhere.
    assert not re.search(r'(src|href)="(?!data:)', html)
    assert "version 2 keeps @champion" in html


def test_cli_report_on_a_folder_without_leaderboard_is_one_line_error(
    tmp_path: Path, capsys
) -> None:
    from kdforge.cli import main

    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "leaderboard.csv is missing" in err and "hint:" in err


def test_report_of_an_unfinished_search_shows_the_leaderboard(search_dir: Path, capsys) -> None:
    from kdforge.report.render import report_search_dir

    (search_dir / "summary.json").unlink()
    report_search_dir(search_dir)
    out = capsys.readouterr().out
    assert "did not finish" in out and "001" in out


def test_gain_reads_as_points_for_fractions_and_in_units_otherwise() -> None:
    from kdforge.data import TaskMetric
    from kdforge.tracking.model_card import _gain

    assert TaskMetric("acc").gain_text(0.012) == "+1.20 points"
    assert TaskMetric("map").gain_text(-0.5) == "-50.00 points"
    perplexity = TaskMetric("perplexity", higher_is_better=False)
    # A perplexity 40 higher than from scratch is a loss of 40, not of "4000 points".
    assert perplexity.gain_text(-40.18) == (
        "-40.18 perplexity (improvement; lower perplexity is better)"
    )
    summary = {"distillation_gain": 3.5, "metric": "rmse", "metric_higher_is_better": False}
    assert _gain(summary).startswith("+3.5 rmse")
    assert _gain({"distillation_gain": float("nan")}) == "-"
