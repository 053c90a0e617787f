"""The ``checkpoint`` teacher reads TorchScript files and state dicts, and refuses pickles."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from kdforge.data import DataInfo
from kdforge.errors import CheckpointError, ConfigError
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.testing import TeacherContract

INFO = DataInfo(name="t", input_shape=(1, 8, 8), num_classes=10)
ARCH = {"depth": 1, "width_0": 16, "dropout": 0.0}


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return MLPSpace().build(ARCH, INFO).eval()


def _teacher(**params) -> CheckpointTeacher:
    teacher = CheckpointTeacher(CheckpointTeacher.Params(**params))
    teacher.load()
    return teacher


def _torchscript_file(tmp_path: Path) -> tuple[Path, nn.Module]:
    model = _mlp()
    path = tmp_path / "teacher.ts"
    torch.jit.save(torch.jit.trace(model, torch.rand(2, 1, 8, 8)), str(path))
    return path, model


def _state_dict_file(tmp_path: Path) -> tuple[Path, nn.Module]:
    model = _mlp()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    return path, model


class TestTorchScriptTeacher(TeacherContract):
    registered_name = "checkpoint"
    input_shape = (1, 8, 8)

    @pytest.fixture
    def plugin(self, tmp_path: Path) -> CheckpointTeacher:
        path, _ = _torchscript_file(tmp_path)
        return CheckpointTeacher(CheckpointTeacher.Params(path=str(path)))


class TestStateDictTeacher(TeacherContract):
    registered_name = "checkpoint"

    @pytest.fixture
    def plugin(self, tmp_path: Path) -> CheckpointTeacher:
        path, _ = _state_dict_file(tmp_path)
        params = {"path": str(path), "factory": "mlp", "arch": ARCH}
        return CheckpointTeacher(
            CheckpointTeacher.Params(**params, input_shape=[1, 8, 8], num_classes=10)
        )


def test_torchscript_file_is_detected_and_matches_the_model(tmp_path: Path) -> None:
    path, model = _torchscript_file(tmp_path)
    teacher = _teacher(path=str(path))
    x = torch.rand(5, 1, 8, 8)
    assert teacher.kind == "torchscript"
    torch.testing.assert_close(teacher.predict(x).logits, model(x))


def test_state_dict_with_a_search_space_factory(tmp_path: Path) -> None:
    path, model = _state_dict_file(tmp_path)
    teacher = _teacher(
        path=str(path), factory="mlp", arch=ARCH, input_shape=[1, 8, 8], num_classes=10
    )
    x = torch.rand(5, 1, 8, 8)
    assert teacher.kind == "state_dict"
    assert teacher.expected_input_shape() == (1, 8, 8) and teacher.expected_num_classes() == 10
    torch.testing.assert_close(teacher.predict(x).logits, model(x))


def test_state_dict_with_an_import_path_factory_and_a_wrapped_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = nn.Linear(8, 3)
    path = tmp_path / "ckpt.pt"
    # A training-loop checkpoint saved from DataParallel: nested and "module."-prefixed.
    wrapped = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": wrapped}, path)
    teacher = _teacher(
        path=str(path), factory="torch.nn:Linear", arch={"in_features": 8, "out_features": 3}
    )
    x = torch.rand(4, 8)
    torch.testing.assert_close(teacher.predict(x).logits, model(x))


def test_state_dict_fingerprint_depends_on_the_architecture(tmp_path: Path) -> None:
    model = nn.Linear(8, 3)
    path = tmp_path / "w.pt"
    torch.save(model.state_dict(), path)
    a = _teacher(
        path=str(path), factory="torch.nn:Linear", arch={"in_features": 8, "out_features": 3}
    )
    b = _teacher(
        path=str(path),
        factory="torch.nn:Linear",
        arch={"in_features": 8, "out_features": 3, "bias": True},
    )
    assert a.fingerprint() != b.fingerprint()


def test_state_dict_without_factory_or_with_a_wrong_one(tmp_path: Path) -> None:
    path, _ = _state_dict_file(tmp_path)
    with pytest.raises(CheckpointError, match="factory"):
        _teacher(path=str(path))
    with pytest.raises(CheckpointError, match="do not fit"):
        _teacher(
            path=str(path), factory="torch.nn:Linear", arch={"in_features": 8, "out_features": 3}
        )
    with pytest.raises(ConfigError, match="input_shape and num_classes"):
        _teacher(path=str(path), factory="mlp", arch=ARCH)
    with pytest.raises(ConfigError, match="cannot be imported"):
        _teacher(path=str(path), factory="no_such_module:build")


class _Payload:
    """Unpickling this creates a file: proof that pickled code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch_save", "raw_pickle"])
def test_hostile_checkpoint_is_refused_and_nothing_runs(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if how == "torch_save":
        torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(str(marker))}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(str(marker))))
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused to load") as caught:
        _teacher(
            path=str(path), factory="torch.nn:Linear", arch={"in_features": 1, "out_features": 1}
        )
    assert "trust_checkpoint: true" in (caught.value.hint or "")
    assert "weights_only=True" in str(caught.value)
    assert not marker.exists()


def test_trust_checkpoint_loads_a_pickled_module_with_a_warning(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(CheckpointError, match="refused"):
        _teacher(path=str(path))
    with pytest.warns(UserWarning, match="weights_only=False"):
        teacher = _teacher(path=str(path), trust_checkpoint=True)
    x = torch.rand(3, 1, 8, 8)
    assert teacher.kind == "pickled_module"
    torch.testing.assert_close(teacher.predict(x).logits, model(x))


def test_kdforge_checkpoints_still_load(tmp_path: Path) -> None:
    from kdforge.checkpoint import save_checkpoint
    from kdforge.plugins.teachers._loading import file_sha256

    model = _mlp()
    path = save_checkpoint(
        tmp_path / "k.pt", space="mlp", arch=ARCH, info=INFO, model=model, meta={"test_acc": 0.9}
    )
    teacher = _teacher(path=str(path))
    x = torch.rand(3, 1, 8, 8)
    assert teacher.kind == "kdforge" and teacher.meta["test_acc"] == 0.9
    assert teacher.fingerprint() == file_sha256(path)
    assert teacher.expected_input_shape() == (1, 8, 8)
    torch.testing.assert_close(teacher.predict(x).logits, model(x))
