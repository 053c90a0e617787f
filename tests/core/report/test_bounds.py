"""The best trials crowding a bound of a searched range are reported (#22 item 20)."""

from __future__ import annotations

from pathlib import Path

from kdforge.report.bounds import SearchedRange, crowded_bounds, top_k
from kdforge.report.leaderboard import TrialRow

LR = SearchedRange("lr", 1e-4, 3e-3, True, "search.lr")
WIDTH = SearchedRange("student.width_0", 8, 128, True, "student.params of space 'mlp'")
ALPHA = SearchedRange("loss.alpha", 0.0, 1.0, False, "loss.hparams.alpha")


def _row(number: int, acc: float, lr: float, width: int, alpha: float, status="finished"):
    return TrialRow(
        number=number,
        trial_id=str(number),
        status=status,
        params=100,
        val_acc=acc,
        test_acc=acc,
        epochs=3,
        lr=lr,
        loss_hparams={"alpha": alpha},
        arch={"depth": 1, "width_0": width},
    )


def test_best_trials_at_the_lr_ceiling_warn() -> None:
    # The case: the best trials sit at the top of the learning-rate range.
    rows = [
        _row(0, 0.70, 2.9e-3, 16, 0.5),
        _row(1, 0.69, 2.6e-3, 100, 0.1),
        _row(2, 0.68, 2.5e-3, 20, 0.9),
        _row(3, 0.50, 1e-4, 32, 0.5),
        _row(4, 0.40, 3e-4, 8, 0.5),
        _row(5, 0.99, 1e-4, 128, 0.5, status="failed"),  # not finished: not counted
    ]
    warnings = crowded_bounds(rows, [LR, WIDTH, ALPHA])
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: the best 3 trials all have lr near the upper bound")
    assert (
        "[0.0001, 0.003, log scale]" in warnings[0]
        and "raise that bound (search.lr)" in warnings[0]
    )


def test_lower_bound_int_ranges_and_nothing_to_say() -> None:
    rows = [_row(i, 0.9 - i / 100, 1e-3, 8 + (i // 3) * 40, 0.5) for i in range(8)]
    warnings = crowded_bounds(rows, [LR, WIDTH])
    assert len(warnings) == 1 and "student.width_0 near the lower bound" in warnings[0]
    assert "lower that bound (student.params of space 'mlp')" in warnings[0]
    assert crowded_bounds(rows[:3], [WIDTH]) == []  # too few finished trials to say
    spread = [_row(i, 0.9 - i / 100, 1e-3, w, 0.5) for i, w in enumerate([8, 128, 30, 60, 9])]
    assert crowded_bounds(spread, [LR, WIDTH]) == []
    assert (top_k(4), top_k(12), top_k(100)) == (3, 3, 5)


def test_searched_ranges_come_from_config_loss_and_space(
    digits_teacher_path: Path, tmp_path: Path
) -> None:
    from kdforge.config import SearchConfig
    from kdforge.data import DataInfo
    from kdforge.search.plan import plan_search
    from kdforge.search.ranges import searched_ranges
    from tests.conftest import tiny_search_config

    raw = tiny_search_config(digits_teacher_path, tmp_path)
    raw["loss"] = {"name": "hinton_kd", "hparams": {"alpha": 0.5}}  # fixed: not searched
    plan = plan_search(SearchConfig.model_validate(raw))
    ranges = {r.name: r for r in searched_ranges(plan, DataInfo("digits", (1, 8, 8), 10))}
    assert ranges["lr"].where == "search.lr" and ranges["lr"].log
    assert "loss.temperature" in ranges and "loss.alpha" not in ranges
    assert ranges["student.width_0"].high == 32 and ranges["student.depth"].high == 2


def test_each_space_brings_its_default_lr_range_unless_the_config_sets_one() -> None:
    from kdforge.config import SearchConfig
    from kdforge.search.plan import with_space_lr
    from kdforge.search_spaces.mlp import MLPSpace
    from kdforge.search_spaces.resnet import ResNetSpace
    from kdforge.search_spaces.transformer import TransformerSpace

    raw = {
        "name": "x",
        "dataset": {"name": "digits"},
        "teacher": {"name": "checkpoint", "params": {"path": "t.pt"}},
        "student": {"name": "transformer"},
    }
    config = SearchConfig.model_validate(raw)
    lr = with_space_lr(config, TransformerSpace()).search.lr
    assert (lr.low, lr.high, lr.log) == (3e-4, 1e-2, True)
    assert with_space_lr(config, MLPSpace()).search.lr.high == 5e-2
    assert with_space_lr(config, ResNetSpace()).search.lr == config.search.lr  # no default
    raw["search"] = {"lr": {"low": 1e-4, "high": 3e-3, "log": True}}
    config = SearchConfig.model_validate(raw)
    assert with_space_lr(config, TransformerSpace()).search.lr.high == 3e-3  # the user's


def test_best_means_the_metric_direction_and_stopped_trials_count() -> None:
    from dataclasses import replace

    from kdforge.data import TaskMetric

    perplexity = TaskMetric("perplexity", higher_is_better=False)
    # Lowest perplexity at the lr ceiling; the highest values sit at the floor.
    rows = [
        replace(_row(0, 3.0, 2.9e-3, 16, 0.5, status="stopped"), metric=perplexity),
        replace(_row(1, 3.1, 2.6e-3, 100, 0.1), metric=perplexity),
        replace(_row(2, 3.2, 2.5e-3, 20, 0.9, status="stopped"), metric=perplexity),
        replace(_row(3, 9.0, 1e-4, 32, 0.5), metric=perplexity),
        replace(_row(4, 9.5, 1.2e-4, 8, 0.5), metric=perplexity),
    ]
    warnings = crowded_bounds(rows, [LR])
    assert len(warnings) == 1 and "lr near the upper bound" in warnings[0]
