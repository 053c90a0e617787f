"""The ``pruned`` and ``choice`` search spaces: cuts of real teachers, rebuilds, contracts."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any, ClassVar

import optuna
import pytest
import torch
from torch import nn

from kdforge import build_checkpoint_model, load_checkpoint, save_checkpoint
from kdforge.config import SearchConfig
from kdforge.data import DataInfo
from kdforge.errors import ConfigError
from kdforge.interfaces import SearchSpace
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.report.best_config import FixedArchitecture
from kdforge.report.leaderboard import TrialRow, write_csv
from kdforge.search_spaces.choice import ChoiceSpace
from kdforge.search_spaces.cnn import CNNSpace
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.search_spaces.pruned import PrunedSpace
from kdforge.search_spaces.resnet import ResNetSpace
from kdforge.testing import SearchSpaceContract
from tests.conftest import tiny_search_config

IMAGE = DataInfo(name="img", input_shape=(1, 8, 8), num_classes=10)

TEACHERS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    # name: (space, teacher arch, the same arch with every width halved)
    "mlp": (
        MLPSpace(),
        {"depth": 3, "width_0": 48, "width_1": 64, "width_2": 32},
        {"depth": 3, "width_0": 24, "width_1": 32, "width_2": 16},
    ),
    "cnn": (
        CNNSpace(),
        {"depth": 3, "channels_0": 16, "channels_1": 32, "channels_2": 32, "kernel": 3},
        {"depth": 3, "channels_0": 8, "channels_1": 16, "channels_2": 16, "kernel": 3},
    ),
    "resnet": (
        ResNetSpace(),
        {"stages": 2, "blocks_0": 2, "width_0": 16, "blocks_1": 1, "width_1": 32, "kernel": 3},
        {"stages": 2, "blocks_0": 2, "width_0": 8, "blocks_1": 1, "width_1": 16, "kernel": 3},
    ),
}


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _teacher_file(tmp_path: Path, kind: str) -> Path:
    space, arch, _ = TEACHERS[kind]
    torch.manual_seed(0)
    model = space.build(arch, IMAGE)
    return save_checkpoint(tmp_path / f"{kind}.pt", space=kind, arch=arch, info=IMAGE, model=model)


def _bound(path: Path, **params: Any) -> PrunedSpace:
    teacher = CheckpointTeacher(CheckpointTeacher.Params(path=str(path)))
    teacher.load()
    space = PrunedSpace(PrunedSpace.Params.model_validate(params))
    space.bind_teacher(teacher)
    return space


def _sample(space: Any, info: DataInfo, n: int, seed: int = 0) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        extra = space.suggest(trial, info) or {}
        out.append({**trial.params, **extra})
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("kind", sorted(TEACHERS))
def test_half_cut_is_the_teacher_with_half_the_widths(tmp_path: Path, kind: str) -> None:
    # Every hidden group keeps half its channels, so the cut has exactly the parameters
    # of the same architecture built with halved widths (residual sums cut together).
    space_cls, _, halved = TEACHERS[kind]
    space = _bound(_teacher_file(tmp_path, kind))
    student = space.build({"ratio": 0.5, "importance": "l1"}, IMAGE)
    predicted = _count(space_cls.build(halved, IMAGE))
    assert _count(student) == predicted
    assert _count(student) < _count(space._teacher)
    x = torch.randn(4, *IMAGE.input_shape)
    logits = student.eval()(x)
    assert logits.shape == (4, 10) and bool(torch.isfinite(logits).all())


@pytest.mark.parametrize("kind", sorted(TEACHERS))
def test_ratio_zero_is_the_teacher(tmp_path: Path, kind: str) -> None:
    path = _teacher_file(tmp_path, kind)
    space = _bound(path)
    teacher = build_checkpoint_model(load_checkpoint(path))
    student = space.build({"ratio": 0.0, "importance": "l2"}, IMAGE).eval()
    x = torch.randn(5, *IMAGE.input_shape)
    assert torch.equal(student(x), teacher(x))
    assert _count(student) == _count(teacher)


def test_importance_decides_which_channels_stay(tmp_path: Path) -> None:
    space = _bound(_teacher_file(tmp_path, "mlp"))
    kept = {}
    for importance in ("l1", "lamp", "fpgm"):
        model = space.build({"ratio": 0.5, "importance": importance}, IMAGE)
        kept[importance] = model.blocks[0][0].weight.detach().clone()
    assert all(w.shape == (24, 64) for w in kept.values())
    teacher_rows = space._teacher.blocks[0][0].weight.detach()
    # Kept rows are teacher rows: the student inherits the teacher's weights.
    for w in kept.values():
        assert all(any(torch.equal(r, t) for t in teacher_rows) for r in w)


def test_per_stage_ratios_and_dropped_blocks(tmp_path: Path) -> None:
    space = _bound(_teacher_file(tmp_path, "resnet"), stages=2, max_dropped_blocks=1)
    archs = _sample(space, IMAGE, 12)
    assert all({"ratio_0", "ratio_1"} <= set(a) for a in archs)
    dropped = [a for a in archs if any(a.get(k) for k in a if k.startswith("drop_"))]
    assert dropped, "no sample dropped a block"
    for arch in archs:
        assert sum(bool(arch[k]) for k in arch if k.startswith("drop_")) <= 1
        model = space.build(arch, IMAGE)
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    model = space.build(dropped[0], IMAGE)
    assert any(isinstance(m, nn.Identity) for m in model.modules())


@pytest.mark.parametrize("kind", sorted(TEACHERS))
def test_checkpoint_rebuilds_from_the_recipe_without_the_teacher(tmp_path: Path, kind: str) -> None:
    path = _teacher_file(tmp_path, kind)
    space = _bound(path, stages=2)
    for i, arch in enumerate(_sample(space, IMAGE, 3, seed=1)):
        student = space.build(arch, IMAGE).eval()
        saved = save_checkpoint(
            tmp_path / f"s{i}.pt", space="pruned", arch=arch, info=IMAGE, model=student
        )
        path.unlink(missing_ok=True)  # the kdforge recipe needs no teacher file
        rebuilt = build_checkpoint_model(load_checkpoint(saved))
        x = torch.randn(3, 1, 8, 8)
        assert torch.allclose(rebuilt(x), student(x), atol=1e-6)


def make_plain_teacher(hidden: int = 40) -> nn.Module:
    """A teacher that is not a kdforge architecture (a factory for state dict files)."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, 10),
    )  # fmt: skip


def test_any_torch_teacher_is_cut_and_rebuilt_from_its_plugin(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher_model = make_plain_teacher()
    weights = tmp_path / "plain.pt"
    torch.save(teacher_model.state_dict(), weights)
    params = {
        "path": str(weights),
        "format": "state_dict",
        "factory": "tests.search_spaces.test_pruned:make_plain_teacher",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
    }
    teacher = CheckpointTeacher(CheckpointTeacher.Params.model_validate(params))
    teacher.load()
    space = PrunedSpace(PrunedSpace.Params())
    space.bind_teacher(teacher)
    arch = {**_sample(space, IMAGE, 1)[0], "ratio": 0.5}
    student = space.build(arch, IMAGE).eval()
    assert _count(student) == _count(make_plain_teacher(20))
    saved = save_checkpoint(tmp_path / "s.pt", space="pruned", arch=arch, info=IMAGE, model=student)
    rebuilt = build_checkpoint_model(load_checkpoint(saved))
    x = torch.randn(3, 1, 8, 8)
    assert torch.allclose(rebuilt(x), student(x))
    torch.save(make_plain_teacher().state_dict(), weights)  # another teacher, same file
    with pytest.raises(ConfigError, match="changed since the student was cut"):
        build_checkpoint_model(load_checkpoint(saved))


def test_missing_torch_pruning_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _teacher_file(tmp_path, "mlp")
    monkeypatch.setitem(sys.modules, "torch_pruning", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"kdforge\[prune\]"):
        _bound(path)


def test_unbound_space_says_what_to_do() -> None:
    trial = optuna.create_study().ask()
    arch = {**(PrunedSpace().suggest(trial, IMAGE) or {}), **trial.params}
    assert "ratio" in arch and "_teacher_recipe" not in arch  # `kdforge plugins show` samples
    with pytest.raises(ConfigError, match="no teacher was bound"):
        PrunedSpace().build(arch, IMAGE)
    with pytest.raises(ConfigError, match="at least one space"):
        ChoiceSpace().bind_teacher(None)


def test_fixed_architecture_binds_the_teacher_to_the_pruned_space(tmp_path: Path) -> None:
    # best_config.yaml wraps the space in FixedArchitecture: the re-run must cut the
    # trained teacher again (inherited weights), not a freshly built one.
    path = _teacher_file(tmp_path, "mlp")
    arch = {**_sample(_bound(path), IMAGE, 1)[0], "ratio": 0.4}
    fixed = FixedArchitecture(PrunedSpace(), arch)
    fixed.bind_teacher(CheckpointTeacher(CheckpointTeacher.Params(path=str(path))))
    x = torch.randn(3, 1, 8, 8)
    expected = _bound(path).build(arch, IMAGE).eval()(x)
    assert torch.equal(fixed.build(fixed.suggest(None, IMAGE) or {}, IMAGE).eval()(x), expected)


def test_feature_names_are_the_teachers(tmp_path: Path) -> None:
    path = _teacher_file(tmp_path, "cnn")
    space = _bound(path)
    teacher = build_checkpoint_model(load_checkpoint(path))
    arch = {"ratio": 0.3, "importance": "l1"}
    assert space.feature_names(arch, IMAGE) == list(teacher.feature_names)


def test_a_feature_loss_distills_a_pruned_student_layer_by_layer(tmp_path: Path) -> None:
    # The cut keeps the teacher's module paths, so the automatic layer map pairs every
    # teacher layer with the student layer of the same name; FitNets then trains on it.
    from kdforge import FeatureTap, match_layers
    from kdforge.plugins.losses.fitnets import FitNets
    from kdforge.training.trainer import TrainSettings, train_model

    path = _teacher_file(tmp_path, "cnn")
    teacher = build_checkpoint_model(load_checkpoint(path))
    space = _bound(path)
    arch = {"ratio": 0.5, "importance": "l1"}
    names = space.feature_names(arch, IMAGE)
    pairs = match_layers(list(teacher.feature_names), names)
    assert pairs == [(n, n) for n in teacher.feature_names]
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    with torch.no_grad(), FeatureTap(teacher, names) as tap:
        logits = teacher(x)
        features = tap.pop()
    student = space.build(arch, IMAGE)
    before = [p.detach().clone() for p in student.parameters()]
    result = train_model(
        student,
        x=x,
        y=y,
        val_x=x,
        val_y=y,
        settings=TrainSettings(epochs=2, lr=1e-2, batch_size=16),
        loss=FitNets(),
        teacher_logits=logits,
        teacher_features=features,
    )
    assert result is not None
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))


def test_student_list_is_a_searched_choice(tmp_path: Path) -> None:
    raw = tiny_search_config(tmp_path / "t.pt", tmp_path)
    raw["student"] = [{"name": "pruned", "params": {"stages": 2}}, {"name": "cnn"}]
    config = SearchConfig.model_validate(raw)
    assert config.student.name == "choice"
    space = ChoiceSpace(ChoiceSpace.Params.model_validate(config.student.params))
    space.bind_teacher(
        CheckpointTeacher(CheckpointTeacher.Params(path=str(_teacher_file(tmp_path, "resnet"))))
    )
    archs = _sample(space, IMAGE, 10)
    assert {a["space"] for a in archs} == {"pruned", "cnn"}
    for i, arch in enumerate(archs):
        prefix = f"{arch['space']}."
        assert all(k.startswith(prefix) for k in arch if k not in ("space", "space_params"))
        model = space.build(arch, IMAGE).eval()
        saved = save_checkpoint(tmp_path / f"c{i}.pt", space="choice", arch=arch, info=IMAGE,
                                model=model)  # fmt: skip
        x = torch.randn(2, 1, 8, 8)
        assert torch.allclose(build_checkpoint_model(load_checkpoint(saved))(x), model(x))
    with pytest.raises(Exception, match="repeated: cnn"):
        ChoiceSpace.Params.model_validate({"spaces": [{"name": "cnn"}, {"name": "cnn"}]})


class TestPrunedContract(SearchSpaceContract):
    plugin_class = PrunedSpace
    plugin_params: ClassVar[dict[str, Any]] = {"stages": 2, "max_dropped_blocks": 2}
    registered_name = "pruned"
    data_infos = (IMAGE,)
    num_samples = 4

    @pytest.fixture
    def plugin(self, tmp_path: Path) -> PrunedSpace:
        return _bound(_teacher_file(tmp_path, "resnet"), **self.plugin_params)


class TestChoiceContract(SearchSpaceContract):
    plugin_class = ChoiceSpace
    plugin_params: ClassVar[dict[str, Any]] = {
        "spaces": [{"name": "pruned"}, {"name": "mlp", "params": {"max_width": 16}}]
    }
    registered_name = "choice"
    data_infos = (IMAGE,)
    num_samples = 6

    @pytest.fixture
    def plugin(self, tmp_path: Path) -> ChoiceSpace:
        space = ChoiceSpace(ChoiceSpace.Params.model_validate(self.plugin_params))
        path = _teacher_file(tmp_path, "cnn")
        space.bind_teacher(CheckpointTeacher(CheckpointTeacher.Params(path=str(path))))
        return space


def test_the_recipe_is_kept_for_rebuilding_but_shown_as_a_digest(tmp_path: Path) -> None:
    space = _bound(_teacher_file(tmp_path, "mlp"))
    arch = _sample(space, IMAGE, 1)[0]
    recipe = arch["_teacher_recipe"]
    assert len(recipe) > 100 and '"arch"' in recipe
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    # The choice space nests keys as `<space>.<key>`: the last dotted part decides.
    nested = {"space": "pruned", **{f"pruned.{k}": v for k, v in arch.items()}}
    assert SearchSpace.shown_arch(nested)["pruned.teacher_recipe_digest"] == digest
    row = TrialRow(0, "t0", "finished", 10, 0.5, 0.5, 1, 1e-3, arch=arch)
    text = write_csv([row], tmp_path / "leaderboard.csv").read_text()
    assert recipe not in text and "student.teacher_recipe_digest" in text and digest in text
    assert row.arch["_teacher_recipe"] == recipe  # the row (best_config's source) keeps it
