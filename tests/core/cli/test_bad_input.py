"""Bad input is caught before anything trains, with a message showing both sides."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch

from kdforge.cli import main
from kdforge.config import SearchConfig
from kdforge.data import DataInfo, DataSplits, Split
from kdforge.errors import ConfigError, DataError, KDForgeError, PluginError, TrackingError
from kdforge.interfaces import ModelOutput, Teacher
from kdforge.search.checks import check_data_against_teacher
from kdforge.search.driver import run_search
from kdforge.search.plan import plan_search
from kdforge.tracking.store import check_tracking_uri
from tests.conftest import tiny_search_config


class _Teacher(Teacher):
    name = "fake"

    def __init__(self, shape=(64,), classes=10, out_classes=None, crash=False) -> None:
        super().__init__()
        self.shape, self.classes, self.crash = shape, classes, crash
        self.out_classes = out_classes if out_classes is not None else classes

    def load(self) -> None:
        pass

    def predict(self, x: torch.Tensor) -> ModelOutput:
        if self.crash:
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x64 and 32x10)")
        return ModelOutput(torch.zeros(len(x), self.out_classes))

    def fingerprint(self) -> str:
        return "x"

    def num_parameters(self) -> int:
        return 1

    def expected_input_shape(self):
        return self.shape

    def expected_num_classes(self):
        return self.classes


def _splits(n: int = 8, shape=(64,), classes: int = 10) -> DataSplits:
    def split(rows: int) -> Split:
        return Split(torch.rand(rows, *shape), torch.arange(rows) % classes)

    return DataSplits(DataInfo("toy", shape, classes), split(n), split(n), split(n))


def test_good_data_passes() -> None:
    check_data_against_teacher(_splits(), _Teacher(), "t")


def test_input_shape_mismatch_shows_both_sides() -> None:
    with pytest.raises(
        DataError, match=r"expects inputs of shape \(1, 8, 8\) but dataset 'toy' gives it \(64,\)"
    ):
        check_data_against_teacher(_splits(), _Teacher(shape=(1, 8, 8)), "t")


def test_class_count_mismatch() -> None:
    with pytest.raises(DataError, match="predicts 5 classes but dataset 'toy' has 10"):
        check_data_against_teacher(_splits(), _Teacher(classes=5), "t")


def test_undeclared_teacher_is_probed_on_real_inputs() -> None:
    with pytest.raises(DataError, match=r"cannot run on dataset 'toy'.*\(64,\).*mat1 and mat2"):
        check_data_against_teacher(_splits(), _Teacher(shape=None, classes=None, crash=True), "t")
    with pytest.raises(DataError, match=r"logits of shape \(3,\) per row but dataset 'toy' has 10"):
        check_data_against_teacher(
            _splits(), _Teacher(shape=None, classes=None, out_classes=3), "t"
        )


def test_empty_split() -> None:
    splits = _splits()
    splits.val = Split(torch.empty(0, 64), torch.empty(0, dtype=torch.long))
    with pytest.raises(DataError, match="the val split is empty"):
        check_data_against_teacher(splits, _Teacher(), "t")


def test_non_finite_inputs() -> None:
    splits = _splits()
    splits.train.x[3, 5] = float("nan")
    splits.train.x[4, 0] = float("inf")
    with pytest.raises(DataError, match="2 train inputs contain NaN or inf"):
        check_data_against_teacher(splits, _Teacher(), "t")


def test_labels_out_of_range() -> None:
    splits = _splits()
    splits.test.y[0] = 12
    with pytest.raises(DataError, match="test labels go up to 12 but the dataset declares 10"):
        check_data_against_teacher(splits, _Teacher(), "t")
    splits = _splits()
    splits.train.y[0] = -3
    with pytest.raises(DataError, match="labels below -1"):
        check_data_against_teacher(splits, _Teacher(), "t")
    splits = _splits()
    splits.val.y[0] = -1
    with pytest.raises(DataError, match="rows of the val split have no label"):
        check_data_against_teacher(splits, _Teacher(), "t")


def _config(tmp_path: Path, **overrides) -> SearchConfig:
    from kdforge.config import validate_config

    return validate_config(
        tiny_search_config(tmp_path / "teacher.pt", tmp_path, **overrides), SearchConfig
    )


def test_plugin_parameter_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"student\.params.*min_depth \(3\) > max_depth \(2\)"):
        plan_search(_config(tmp_path, **{"student.params": {"min_depth": 3, "max_depth": 2}}))
    with pytest.raises(ConfigError, match=r"student\.params\.max_widht: unknown key.*max_width"):
        plan_search(_config(tmp_path, **{"student.params": {"max_widht": 3}}))


def test_loss_hyperparameter_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"loss\.hparams\.alpha: 2 is outside the range \[0, 1\]"):
        plan_search(_config(tmp_path, loss={"name": "hinton_kd", "hparams": {"alpha": 2.0}}))
    with pytest.raises(ConfigError, match=r"loss\.hparams\.temprature.*did you mean 'temperature'"):
        plan_search(_config(tmp_path, loss={"name": "hinton_kd", "hparams": {"temprature": 2.0}}))
    with pytest.raises(
        ConfigError, match=r"^config: loss\.hparams\.temperature: log scale needs low > 0"
    ):
        _config(
            tmp_path,
            loss={
                "name": "hinton_kd",
                "hparams": {"temperature": {"low": 0, "high": 4, "log": True}},
            },
        )


def test_unknown_plugin_lists_choices(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"unknown dataset 'digts'; available: .*digits") as info:
        plan_search(_config(tmp_path, **{"dataset.name": "digts"}))
    assert info.value.hint == "did you mean 'digits'?"


def test_unwritable_output_is_reported_before_training(
    tmp_path: Path, digits_teacher_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    raw = tiny_search_config(digits_teacher_path, tmp_path, output_dir=str(blocker / "runs"))
    with pytest.raises(ConfigError, match="output_dir: cannot write search folder"):
        run_search(SearchConfig.model_validate(raw), emit=lambda _: None)


def test_unwritable_or_dead_tracking_location(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(TrackingError, match=r"cannot create the tracking store folder"):
        check_tracking_uri(f"sqlite:///{blocker}/sub/mlflow.db")
    with pytest.raises(TrackingError, match="is a directory"):
        check_tracking_uri(f"sqlite:///{tmp_path}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        TrackingError, match=f"server http://127.0.0.1:{port} does not answer"
    ) as info:
        check_tracking_uri(f"http://127.0.0.1:{port}", timeout_s=2)
    assert "drop --tracking-uri" in (info.value.hint or "")


def test_unexpected_errors_exit_1_with_a_pointer_to_debug(monkeypatch, capsys) -> None:
    import kdforge.cli

    def boom(args):
        raise ZeroDivisionError("division by zero")

    parser = kdforge.cli.build_parser()
    monkeypatch.setattr(kdforge.cli, "build_parser", lambda: _with_func(parser, boom))
    assert main(["plugins"]) == 1
    err = capsys.readouterr().err
    assert "unexpected ZeroDivisionError: division by zero" in err and "--debug" in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "plugins"])


def _with_func(parser, func):
    for action in parser._subparsers._group_actions:
        for sub in action.choices.values():
            sub.set_defaults(func=func)
    return parser


def test_a_search_that_fails_before_it_starts_leaves_no_folder(tmp_path: Path) -> None:
    from kdforge.search.folder import remove_if_unstarted

    broken = tmp_path / "teacher.pt"
    broken.write_bytes(b"not a checkpoint")
    config = _config(tmp_path)  # its teacher is tmp_path/teacher.pt: not a checkpoint
    with pytest.raises(KDForgeError):
        run_search(config, emit=lambda _: None)
    runs = Path(config.output_dir)
    assert not runs.exists() or list(runs.rglob("*")) == []  # not even NAME/TIMESTAMP/
    # A folder that holds more than its config (a started search) is kept for resume.
    started = tmp_path / "kept" / "20260101-000000"
    started.mkdir(parents=True)
    (started / "config.yaml").write_text("name: kept\n")
    (started / "state.json").write_text("{}")
    assert not remove_if_unstarted(started) and (started / "config.yaml").exists()
    (started / "state.json").unlink()
    assert remove_if_unstarted(started) and not started.parent.exists()
