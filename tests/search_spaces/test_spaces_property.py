"""Property-style checks of every built-in space: many random points build and run.

Optuna's RandomSampler draws many points per space and data shape (tiny ranges and
inputs); every one must build, map ``(n, *input_shape)`` to finite logits, count
MACs, and respect its conditional parameters. ``tests/plugins`` holds the generic
contract kit; this file adds more samples and the space-specific invariants.
"""

from __future__ import annotations

from typing import Any

import optuna
import pytest
import torch
from torch import nn

from kdforge.data import DataInfo
from kdforge.interfaces import SearchSpace
from kdforge.objectives.costs import count_macs, example_input
from kdforge.plugin_host.manager import get_registry

IMAGE = DataInfo(name="image", input_shape=(1, 6, 6), num_classes=3)
SEQUENCE = DataInfo(name="sequence", input_shape=(2, 9), num_classes=4)  # (C, L): 1-D conv
FLAT = DataInfo(name="flat", input_shape=(7,), num_classes=2)
TOKENS = DataInfo(
    name="tokens",
    input_shape=(5,),
    num_classes=3,
    input_dtype="int64",
    vocab_size=11,
    pad_token_id=0,
)
FLOAT_SEQ = DataInfo(name="float-seq", input_shape=(5, 3), num_classes=2)

SPACES: dict[str, tuple[dict[str, Any], tuple[DataInfo, ...]]] = {
    "mlp": ({"max_depth": 3, "max_width": 16}, (IMAGE, FLAT)),
    "cnn": ({"max_depth": 3, "max_channels": 8}, (IMAGE, SEQUENCE, FLAT)),
    "resnet": ({"max_stages": 3, "max_blocks": 2, "max_width": 8}, (IMAGE, SEQUENCE, FLAT)),
    "transformer": (
        {
            "max_layers": 2,
            "hidden_sizes": [8, 12, 16],
            "heads": [1, 2, 4, 3],
            "max_ffn": 24,
            "min_ffn": 4,
        },
        (TOKENS, FLOAT_SEQ, FLAT, IMAGE),
    ),
}
SAMPLES = 10
MAC_SAMPLES = 3  # the MAC counter runs Python per op: count on the first few points only


def _space(name: str) -> SearchSpace:
    record = get_registry().get("search_space", name)
    params, _ = SPACES[name]
    return record.cls(record.cls.Params(**params))


def _points(space: SearchSpace, info: DataInfo, n: int = SAMPLES) -> list[dict[str, Any]]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    points = []
    for _ in range(n):
        trial = study.ask()
        extra = space.suggest(trial, info)
        points.append({**trial.params, **(extra or {})})
        study.tell(trial, 0.0)
    return points


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_sampled_point_builds_and_runs(name: str) -> None:
    space = _space(name)
    for info in SPACES[name][1]:
        for index, arch in enumerate(_points(space, info)):
            torch.manual_seed(0)
            model = space.build(arch, info).eval()
            x = example_input(info, 2)
            with torch.no_grad():
                logits = model(x)
            assert tuple(logits.shape) == (2, info.num_classes), (info.name, arch)
            assert bool(torch.isfinite(logits).all()), (info.name, arch)
            if index < MAC_SAMPLES:
                # MACs are counted on the built graph: every space multiplies something.
                assert count_macs(model, example_input(info, 1)) > 0, (info.name, arch)


def _convs(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_conv_spaces_adapt_to_1d_or_2d_inputs(name: str) -> None:
    space = _space(name)
    for info, kind in ((IMAGE, nn.Conv2d), (SEQUENCE, nn.Conv1d), (FLAT, nn.Conv1d)):
        for arch in _points(space, info, 4):
            convs = _convs(space.build(arch, info))
            assert convs and all(isinstance(c, kind) for c in convs), (info.name, arch)


def test_resnet_conditional_params_follow_the_stage_count() -> None:
    space = _space("resnet")
    for arch in _points(space, IMAGE, 20):
        stages = arch["stages"]
        assert {k for k in arch if k.startswith(("blocks_", "width_"))} == {
            f"{p}_{i}" for p in ("blocks", "width") for i in range(stages)
        }
        model = space.build(arch, IMAGE)
        assert len(model.stages) == stages
        assert [len(s) for s in model.stages] == [arch[f"blocks_{i}"] for i in range(stages)]
        # A residual stage of width w ends with w channels: the head reads the last one.
        assert model.head.in_features == arch[f"width_{stages - 1}"]


def test_transformer_heads_are_conditional_on_hidden() -> None:
    space = _space("transformer")
    seen = set()
    for arch in _points(space, FLOAT_SEQ, 40):
        assert arch["hidden"] % arch["heads"] == 0, arch
        # 3 heads do not divide 8 or 16: the head count is sampled per hidden size.
        assert arch[f"heads_h{arch['hidden']}"] == arch["heads"]
        seen.add((arch["hidden"], arch["heads"]))
        model = space.build(arch, FLOAT_SEQ)
        assert len(model.layers) == arch["layers"]
        assert model.layers[0].ff1.out_features == arch["ffn"]
    assert (12, 3) in seen and not any(h in (8, 16) and k == 3 for h, k in seen)


def test_transformer_heads_are_one_param_when_every_count_fits() -> None:
    space = get_registry().get("search_space", "transformer").cls()  # [32, 64, 128] x [1, 2, 4]
    for arch in _points(space, FLOAT_SEQ, 5):
        assert "heads" in arch and not any(k.startswith("heads_h") for k in arch)


def test_transformer_pads_do_not_change_the_prediction() -> None:
    space = _space("transformer")
    arch = {"layers": 2, "hidden": 8, "heads": 2, "ffn": 8, "pooling": "mean"}
    torch.manual_seed(0)
    model = space.build(arch, TOKENS).eval()
    short = torch.tensor([[4, 7, 0, 0, 0]])
    with torch.no_grad():
        masked = model(short)
        model.pad_token_id = None  # the same weights, padding treated as tokens
        unmasked = model(short)
    assert not torch.allclose(masked, unmasked)
    # With masking, what the padded positions hold cannot matter: change their embedding.
    model.pad_token_id = 0
    with torch.no_grad():
        model.embed.weight[0] += 5.0
        assert torch.allclose(model(short), masked, atol=1e-5)
