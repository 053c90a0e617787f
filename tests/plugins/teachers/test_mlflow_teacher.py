"""The ``mlflow`` teacher: train-teacher registers, a search loads ``models:/NAME@ALIAS``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from kdforge.config import PluginRef, TeacherConfig
from kdforge.errors import CheckpointError, ConfigError
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.datasets.digits import Digits
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.plugins.teachers.mlflow_model import MlflowTeacher
from kdforge.testing import TeacherContract

NAME = "digits-teacher"


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``kdforge train-teacher`` with ``registered_model_name`` (one SQLite store)."""
    from kdforge.teacher.train_teacher import train_teacher

    folder = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    config = TeacherConfig.model_validate(
        {
            "name": "reg-teacher",
            "dataset": {"name": "digits"},
            "architecture": {"name": "mlp", "params": {"depth": 1, "width_0": 64}},
            "training": {"epochs": 5},
            "output": str(folder / "teacher.pt"),
            "tracking": {"uri": uri},
            "registered_model_name": NAME,
            "registered_model_alias": "teacher",
        }
    )
    result = train_teacher(config, emit=lambda _: None)
    return {**result, "tracking_uri": uri, "folder": folder}


def _mlflow_teacher(registered: dict[str, Any], uri: str, **params: Any) -> MlflowTeacher:
    teacher = MlflowTeacher(
        MlflowTeacher.Params(uri=uri, tracking_uri=registered["tracking_uri"], **params)
    )
    teacher.load()
    return teacher


class TestMlflowContract(TeacherContract):
    registered_name = "mlflow"

    @pytest.fixture
    def plugin(self, registered: dict[str, Any]) -> MlflowTeacher:
        return MlflowTeacher(
            MlflowTeacher.Params(
                uri=f"models:/{NAME}@teacher", tracking_uri=registered["tracking_uri"]
            )
        )


def test_train_teacher_registers_and_the_alias_loads_the_same_model(registered) -> None:
    assert registered["uri"] == f"models:/{NAME}@teacher" and registered["version"] == 1
    by_alias = _mlflow_teacher(registered, registered["uri"])
    assert by_alias.flavor == "pytorch"
    assert by_alias.expected_input_shape() == (1, 8, 8) and by_alias.expected_num_classes() == 10
    file_teacher = CheckpointTeacher(CheckpointTeacher.Params(path=registered["path"]))
    file_teacher.load()
    x = Digits().load(0).test.x
    torch.testing.assert_close(by_alias.predict(x).logits, file_teacher.predict(x).logits)
    assert by_alias.num_parameters() == file_teacher.num_parameters()
    by_version = _mlflow_teacher(registered, f"models:/{NAME}/1")
    by_run = _mlflow_teacher(registered, f"runs:/{registered['run_id']}/teacher")
    assert by_alias.fingerprint() == by_version.fingerprint() == by_run.fingerprint()


def test_an_onnx_model_in_the_registry(registered, tmp_path: Path) -> None:
    import mlflow
    import onnx

    from kdforge.plugins.exporters.onnx import OnnxExporter

    file_teacher = CheckpointTeacher(CheckpointTeacher.Params(path=registered["path"]))
    file_teacher.load()
    x = Digits().load(0).test.x[:16]
    exported = OnnxExporter().export(file_teacher._model, x[:2], tmp_path / "t.onnx")
    mlflow.set_tracking_uri(registered["tracking_uri"])
    mlflow.set_experiment("kdforge")  # train-teacher's experiment (artifacts next to it)
    with mlflow.start_run():
        mlflow.onnx.log_model(
            onnx.load(str(exported.path)), name="onnx-teacher", registered_model_name="onnx-teacher"
        )
    teacher = _mlflow_teacher(registered, "models:/onnx-teacher/1")
    assert teacher.flavor == "onnx" and teacher.num_parameters() == file_teacher.num_parameters()
    torch.testing.assert_close(
        teacher.predict(x).logits, file_teacher.predict(x).logits, rtol=1e-4, atol=1e-4
    )


def test_bad_uris(registered) -> None:
    with pytest.raises(ConfigError, match=r"teacher\.params(\.|: )uri: expected models:/"):
        instantiate("teacher", PluginRef(name="mlflow", params={"uri": "s3://bucket/x"}), "teacher")
    with pytest.raises(CheckpointError, match="cannot fetch"):
        _mlflow_teacher(registered, f"models:/{NAME}@no-such-alias")
    with pytest.raises(CheckpointError, match="none of"):
        _mlflow_teacher(registered, registered["uri"], flavor="onnx")


@pytest.mark.slow
def test_search_distils_from_the_registered_teacher(
    registered, tmp_path: Path, ray_session
) -> None:
    from kdforge.config import SearchConfig
    from kdforge.search.driver import run_search
    from tests.conftest import tiny_search_config

    raw = tiny_search_config(
        Path(registered["path"]),
        tmp_path,
        **{
            "search.num_trials": 2,
            "search.epochs": 3,
            "search.grace_period": 1,
            "baseline.enabled": False,
            "export.enabled": False,
            "tracking.uri": registered["tracking_uri"],
        },
    )
    raw["teacher"] = {"name": "mlflow", "params": {"uri": f"models:/{NAME}@teacher"}}
    config = SearchConfig.model_validate(raw)
    # The teacher's tracking_uri defaults to MLFLOW_TRACKING_URI, as for any MLflow client.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", registered["tracking_uri"])
        result = run_search(config, emit=lambda _: None)
    assert result.best is not None
    assert result.summary["teacher_test_acc"] == pytest.approx(registered["test_acc"], abs=1e-6)


def test_a_search_on_another_split_than_the_registered_teacher_is_refused(registered) -> None:
    """The version's kdforge.split tag reaches the split check: no test on its own rows."""
    from kdforge.config import DatasetRef
    from kdforge.errors import DataError
    from kdforge.plugin_host.resolve import instantiate
    from kdforge.search.checks import check_split_against_teacher

    teacher = _mlflow_teacher(registered, f"models:/{NAME}@teacher")
    assert teacher.meta["split"]["split_seed"] == 0
    same, other = DatasetRef(name="digits"), DatasetRef(name="digits", split_seed=1)
    check_split_against_teacher(same, instantiate("dataset", same, "dataset").load(0), teacher, "t")
    splits = instantiate("dataset", other, "dataset").load(1)
    with pytest.raises(DataError, match="split_seed"):
        check_split_against_teacher(other, splits, teacher, "t")
