"""Feature taps: exposed names, hooks, layer mapping, teacher features, the trainer path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from kdforge.checkpoint import save_checkpoint
from kdforge.data import DataInfo, DataSplits, Split
from kdforge.errors import ConfigError, PluginError
from kdforge.features import FeatureTap, match_layers, model_feature_names
from kdforge.interfaces import LossNeeds, ModelOutput, PluginParams, Teacher
from kdforge.plugins.losses.cosine_embedding import CosineEmbedding
from kdforge.plugins.losses.fitnets import FitNets
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search_spaces.cnn import CNNSpace
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.teacher.outputs import compute_teacher_outputs
from kdforge.training.trainer import TrainSettings, train_model

INFO = DataInfo(name="toy", input_shape=(1, 8, 8), num_classes=3)


def _splits(n: int = 96) -> DataSplits:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1).float()
    return DataSplits(INFO, Split(x, y), Split(x[:32], y[:32]), Split(x[32:64], y[32:64]))


# --- names and taps -------------------------------------------------------------


def test_spaces_declare_the_features_their_models_expose() -> None:
    mlp_arch = {"depth": 3, "width_0": 8, "width_1": 8, "width_2": 4}
    cnn_arch = {"depth": 2, "channels_0": 4, "channels_1": 6, "kernel": 3}
    for space, arch in ((MLPSpace(), mlp_arch), (CNNSpace(), cnn_arch)):
        model = space.build(arch, INFO)
        assert space.feature_names(arch, INFO) == model_feature_names(model)
    assert MLPSpace().feature_names(mlp_arch, INFO) == ["blocks.0", "blocks.1", "blocks.2"]
    assert CNNSpace().feature_names(cnn_arch, INFO) == ["blocks.0", "blocks.1", "pool"]


def test_undeclared_models_get_parameterised_children_without_the_head() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(4, 8)
            self.act = nn.ReLU()
            self.layers = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
            self.head = nn.Linear(8, 2)

    assert model_feature_names(Net()) == ["stem", "layers.0", "layers.1"]
    seq = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    assert model_feature_names(seq) == ["0", "2"]


def test_tap_captures_named_outputs_and_removes_its_hooks() -> None:
    arch = {"depth": 2, "channels_0": 4, "channels_1": 6, "kernel": 3}
    model = CNNSpace().build(arch, INFO)
    x = torch.randn(5, 1, 8, 8)
    tap = FeatureTap(model, model_feature_names(model))
    with tap:
        logits = model(x)
    features = tap.pop()
    assert logits.shape == (5, 3)
    assert {k: tuple(v.shape) for k, v in features.items()} == {
        "blocks.0": (5, 4, 4, 4),
        "blocks.1": (5, 6, 2, 2),
        "pool": (5, 6, 1, 1),
    }
    assert all(not m._forward_hooks for m in model.modules())
    with pytest.raises(ConfigError, match=r"no module 'blocks\.7'") as info:
        FeatureTap(model, ["blocks.7"], owner="student")
    assert "blocks.0, blocks.1, pool" in str(info.value)


# --- layer mapping --------------------------------------------------------------


def test_automatic_mapping_pairs_layers_by_relative_depth() -> None:
    t4 = ["t0", "t1", "t2", "t3"]
    assert match_layers(t4, ["s0", "s1"]) == [("t1", "s0"), ("t3", "s1")]
    assert match_layers(["t0", "t1"], ["s0", "s1", "s2", "s3"]) == [("t0", "s1"), ("t1", "s3")]
    assert match_layers(["t0", "t1", "t2"], ["s0", "s1", "s2"]) == [
        ("t0", "s0"),
        ("t1", "s1"),
        ("t2", "s2"),
    ]
    assert match_layers(["t0", "t1", "t2", "t3", "t4"], ["s0", "s1", "s2"]) == [
        ("t1", "s0"),
        ("t3", "s1"),
        ("t4", "s2"),
    ]
    assert match_layers(t4, ["s0", "s1"], auto="last") == [("t3", "s1")]


def test_explicit_mapping_is_used_and_checked() -> None:
    assert match_layers(["a", "b"], ["x", "y"], {"a": "y"}) == [("a", "y")]
    with pytest.raises(ConfigError, match=r"loss.params.layers: the teacher has no feature 'c'"):
        match_layers(["a", "b"], ["x"], {"c": "x"})
    with pytest.raises(ConfigError, match="the student has no feature 'z'; it exposes: x"):
        match_layers(["a"], ["x"], {"a": "z"})
    with pytest.raises(ConfigError, match="student exposes no intermediate features"):
        match_layers(["a"], [])


# --- teacher features -----------------------------------------------------------


@pytest.fixture
def checkpoint_teacher(tmp_path: Path) -> CheckpointTeacher:
    torch.manual_seed(0)
    arch = {"depth": 3, "width_0": 32, "width_1": 16, "width_2": 16}
    model = MLPSpace().build(arch, INFO)
    path = save_checkpoint(tmp_path / "t.pt", space="mlp", arch=arch, info=INFO, model=model)
    teacher = CheckpointTeacher(CheckpointTeacher.Params(path=str(path)))
    teacher.load()
    return teacher


def test_teacher_features_through_forward_hooks(checkpoint_teacher: CheckpointTeacher) -> None:
    x = torch.randn(4, 1, 8, 8)
    out = checkpoint_teacher.predict_features(x)
    assert list(out.features) == ["blocks.0", "blocks.1", "blocks.2"]
    assert out.features["blocks.0"].shape == (4, 32)
    torch.testing.assert_close(out.logits, checkpoint_teacher.predict(x).logits)
    assert list(checkpoint_teacher.predict_features(x, ["blocks.1"]).features) == ["blocks.1"]
    with pytest.raises(ConfigError, match=r"has no feature 'blocks\.9'"):
        checkpoint_teacher.predict_features(x, ["blocks.9"])


def test_teacher_features_computed_once_and_only_when_needed(
    checkpoint_teacher: CheckpointTeacher,
) -> None:
    splits = _splits()
    plain = compute_teacher_outputs(checkpoint_teacher, splits, batch_size=40)
    assert plain.train_features == {}
    featured = compute_teacher_outputs(
        checkpoint_teacher, splits, batch_size=40, needs=LossNeeds(features=True)
    )
    assert featured.forward_calls == plain.forward_calls
    assert {k: tuple(v.shape) for k, v in featured.train_features.items()} == {
        "blocks.0": (96, 32),
        "blocks.1": (96, 16),
        "blocks.2": (96, 16),
    }
    torch.testing.assert_close(featured.train, plain.train)
    needs = FitNets.needs(FitNets.Params(layers={"blocks.1": "blocks.0"}))
    only = compute_teacher_outputs(checkpoint_teacher, splits, needs=needs)
    assert list(only.train_features) == ["blocks.1"]


class _EmbeddingTeacher(Teacher):
    """A teacher that gives embeddings only (no logits)."""

    name = "embedder"
    Params = PluginParams

    def load(self) -> None:
        torch.manual_seed(1)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 12))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> ModelOutput:
        return ModelOutput(None, {"pooled": self.encoder(x)})

    def fingerprint(self) -> str:
        return "embedder"

    def num_parameters(self) -> int:
        return 64 * 12 + 12


def test_embedding_only_teacher_distils_with_cosine_embedding() -> None:
    teacher = _EmbeddingTeacher()
    teacher.load()
    splits = _splits()
    loss = CosineEmbedding(CosineEmbedding.Params(ce_weight=0.2), {"cos_weight": 1.0})
    with pytest.raises(PluginError, match="returned no logits"):
        compute_teacher_outputs(teacher, splits)
    outputs = compute_teacher_outputs(teacher, splits, needs=loss.needs(loss.params))
    assert not outputs.has_logits and list(outputs.train_features) == ["pooled"]
    assert outputs.accuracy(splits) == {
        "val": pytest.approx(float("nan"), nan_ok=True),
        "test": pytest.approx(float("nan"), nan_ok=True),
    }
    torch.manual_seed(0)
    model = MLPSpace().build({"depth": 2, "width_0": 16, "width_1": 8}, INFO)
    result = train_model(
        model,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=3, lr=0.01, batch_size=32),
        loss=loss,
        teacher_logits=None,
        teacher_features=outputs.train_features,
    )
    first, last = result.history[0].parts["cos"], result.history[-1].parts["cos"]
    assert last < first, "the student's embedding must move toward the teacher's"
    assert loss.pairs == [("pooled", "blocks.1")]


# --- the trainer optimises learnable loss parts ---------------------------------


def test_trainer_optimises_the_fitnets_adapter_with_the_student(
    checkpoint_teacher: CheckpointTeacher,
) -> None:
    splits = _splits()
    outputs = compute_teacher_outputs(checkpoint_teacher, splits, needs=LossNeeds(features=True))
    torch.manual_seed(0)
    model = MLPSpace().build({"depth": 2, "width_0": 8, "width_1": 4}, INFO)
    loss = FitNets(FitNets.Params(), {"hint_weight": 10.0})
    # Bind as the trainer would (it binds once; a bound loss keeps its adapters).
    with FeatureTap(model, model_feature_names(model)) as tap:
        probe = model(splits.train.x[:8])
    loss.bind(
        ModelOutput(probe.detach(), {k: v.detach() for k, v in tap.pop().items()}),
        ModelOutput(outputs.train[:8], {k: v[:8] for k, v in outputs.train_features.items()}),
    )
    assert loss.pairs == [("blocks.1", "blocks.0"), ("blocks.2", "blocks.1")]
    params = loss.parameters()
    before = [p.detach().clone() for p in params]
    assert len(before) == 4  # two linear adapters 8->16 and 4->16
    result = train_model(
        model,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=3, lr=0.01, batch_size=32),
        loss=loss,
        teacher_logits=outputs.train,
        teacher_features=outputs.train_features,
    )
    after = loss.parameters()
    assert all(a is p for a, p in zip(after, params, strict=True)), "bind must not rebuild them"
    assert all(not torch.equal(b, a) for b, a in zip(before, after, strict=True))
    assert result.history[-1].parts["hint"] < result.history[0].parts["hint"]


def test_trainer_binds_feature_losses_itself_and_requires_teacher_features(
    checkpoint_teacher: CheckpointTeacher,
) -> None:
    splits = _splits()
    outputs = compute_teacher_outputs(checkpoint_teacher, splits, needs=LossNeeds(features=True))
    model = CNNSpace().build({"depth": 1, "channels_0": 4, "kernel": 3}, INFO)
    common = dict(
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=1, lr=0.01, batch_size=32),
        teacher_logits=outputs.train,
    )
    with pytest.raises(PluginError, match="needs teacher features"):
        train_model(model, loss=FitNets(), **common)
    loss = FitNets(FitNets.Params(layers={"blocks.2": "blocks.0.0"}))
    train_model(model, loss=loss, teacher_features=outputs.train_features, **common)
    # An explicit mapping may name any student module path (here the conv inside block 0).
    assert loss.pairs == [("blocks.2", "blocks.0.0")]
    assert len(loss.parameters()) == 2


def test_distilled_baseline_gets_teacher_features(checkpoint_teacher: CheckpointTeacher) -> None:
    from kdforge.search.baseline import train_fixed
    from kdforge.search.trial import TrialPayload

    splits = _splits()
    outputs = compute_teacher_outputs(checkpoint_teacher, splits, needs=LossNeeds(features=True))
    payload = TrialPayload(
        info=INFO,
        train_x=splits.train.x,
        train_y=splits.train.y,
        teacher_train_logits=outputs.train,
        val_x=splits.val.x,
        val_y=splits.val.y,
        test_x=splits.test.x,
        test_y=splits.test.y,
        space=MLPSpace(),
        loss_cls=FitNets,
        loss_params=FitNets.Params(),
        epochs=2,
        batch_size=32,
        weight_decay=0.0,
        seed=0,
        threads=1,
        teacher_train_features=outputs.train_features,
    )
    arch = {"depth": 1, "width_0": 8}
    acc = train_fixed(payload, arch, {"hint_weight": 1.0}, 0.01, seed=0, distill=True)
    assert 0.0 <= acc <= 1.0
