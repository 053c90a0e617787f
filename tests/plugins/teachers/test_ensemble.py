"""The ``ensemble`` teacher: three small teachers (one nested), combined two ways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from kdforge.config import PluginRef
from kdforge.errors import ConfigError, PluginError
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.datasets.digits import Digits
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.plugins.teachers.ensemble import EnsembleTeacher
from kdforge.testing import TeacherContract
from tests.plugins.teachers._helpers import train_small_teachers


@pytest.fixture(scope="module")
def teacher_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return train_small_teachers(tmp_path_factory.mktemp("members"))


def _ref(path: Path) -> dict[str, Any]:
    return {"name": "checkpoint", "params": {"path": str(path)}}


def _ensemble(paths: list[Path], **params: Any) -> EnsembleTeacher:
    # The third member sits in a nested ensemble: nested kinds are allowed.
    members = [
        _ref(paths[0]),
        _ref(paths[1]),
        {"name": "ensemble", "params": {"members": [_ref(paths[2])]}},
    ]
    teacher = instantiate(
        "teacher", PluginRef(name="ensemble", params={"members": members, **params}), "teacher"
    )
    teacher.load()
    return teacher


def _loaded(path: Path) -> CheckpointTeacher:
    member = CheckpointTeacher(CheckpointTeacher.Params(path=str(path)))
    member.load()
    return member


def _member_logits(paths: list[Path], x: torch.Tensor) -> list[torch.Tensor]:
    return [_loaded(path).predict(x).logits for path in paths]


class TestEnsembleContract(TeacherContract):
    registered_name = "ensemble"

    @pytest.fixture
    def plugin(self, teacher_paths: list[Path]) -> EnsembleTeacher:
        return EnsembleTeacher(
            EnsembleTeacher.Params(members=[PluginRef(**_ref(p)) for p in teacher_paths])
        )


def test_mean_of_probabilities_with_weights(teacher_paths: list[Path]) -> None:
    teacher = _ensemble(teacher_paths, weights=[2, 1, 1])
    x = Digits().load(0).test.x[:20]
    members = _member_logits(teacher_paths, x)
    expected = sum(
        w * torch.softmax(m, -1) for w, m in zip([0.5, 0.25, 0.25], members, strict=True)
    )
    logits = teacher.predict(x).logits
    torch.testing.assert_close(torch.softmax(logits, -1), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(20), rtol=1e-5, atol=1e-5)
    assert teacher.num_parameters() == sum(_loaded(p).num_parameters() for p in teacher_paths)


def test_mean_of_logits(teacher_paths: list[Path]) -> None:
    teacher = _ensemble(teacher_paths, combine="mean_logits")
    x = Digits().load(0).test.x[:10]
    first, second, third = _member_logits(teacher_paths, x)
    # The nested one-member ensemble combines probabilities: its logits are log-probs.
    expected = (first + second + torch.log_softmax(third, -1)) / 3
    torch.testing.assert_close(teacher.predict(x).logits, expected, rtol=1e-5, atol=1e-5)


def test_accuracy_report_per_member_and_ensemble(teacher_paths: list[Path]) -> None:
    teacher = _ensemble(teacher_paths)
    split = Digits().load(0).test
    report = teacher.accuracy_report(split)
    assert list(report) == [
        "member0:checkpoint",
        "member1:checkpoint",
        "member2:ensemble",
        "ensemble",
    ]
    members = _member_logits(teacher_paths, split.x)
    for i, logits in enumerate(members):
        acc = float((logits.argmax(-1) == split.y).float().mean())
        assert report[list(report)[i]] == pytest.approx(acc)
    combined = float((teacher.predict(split.x).logits.argmax(-1) == split.y).float().mean())
    assert report["ensemble"] == pytest.approx(combined)
    # The classic reason to distil an ensemble: it is at least as good as a typical member.
    assert report["ensemble"] >= sorted(report[k] for k in list(report)[:3])[1] - 0.02


def test_fingerprint_follows_members_weights_and_rule(teacher_paths: list[Path]) -> None:
    base = _ensemble(teacher_paths).fingerprint()
    assert _ensemble(teacher_paths).fingerprint() == base
    assert _ensemble(teacher_paths, weights=[1, 2, 1]).fingerprint() != base
    assert _ensemble(teacher_paths, combine="mean_logits").fingerprint() != base
    swapped = list(reversed(teacher_paths))
    assert _ensemble(swapped).fingerprint() != base


def test_bad_configs_fail_before_loading(teacher_paths: list[Path]) -> None:
    members = [_ref(p) for p in teacher_paths]
    with pytest.raises(ConfigError, match="weights has 2 entries but there are 3 members"):
        instantiate(
            "teacher",
            PluginRef(name="ensemble", params={"members": members, "weights": [1, 1]}),
            "teacher",
        )
    with pytest.raises(PluginError):
        instantiate(
            "teacher", PluginRef(name="ensemble", params={"members": [{"name": "nope"}]}), "teacher"
        )
    with pytest.raises(ConfigError, match=r"members\.1\.params"):
        instantiate(
            "teacher",
            PluginRef(
                name="ensemble",
                params={"members": [members[0], {"name": "checkpoint", "params": {"pth": "x"}}]},
            ),
            "teacher",
        )


def test_members_with_different_classes_are_refused(
    teacher_paths: list[Path], tmp_path: Path
) -> None:
    other = tmp_path / "three.pt"
    torch.save(torch.nn.Linear(64, 3).state_dict(), other)
    odd = {
        "name": "checkpoint",
        "params": {
            "path": str(other),
            "factory": "torch.nn:Linear",
            "arch": {"in_features": 64, "out_features": 3},
            "num_classes": 3,
        },
    }
    teacher = instantiate(
        "teacher",
        PluginRef(name="ensemble", params={"members": [_ref(teacher_paths[0]), odd]}),
        "teacher",
    )
    with pytest.raises(ConfigError, match="disagree on classes"):
        teacher.load()
