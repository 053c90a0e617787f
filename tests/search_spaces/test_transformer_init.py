"""``transformer``: DistilBERT-style initialisation from a compatible teacher's layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from ray.tune.search.optuna.optuna_search import unflatten_dict

from kdforge.checkpoint import save_checkpoint
from kdforge.config import Range
from kdforge.data import DataInfo
from kdforge.errors import ConfigError
from kdforge.plugins.teachers.checkpoint import CheckpointTeacher
from kdforge.search.sampler import DefineByRun
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.search_spaces.transformer import TransformerSpace
from kdforge.search_spaces.transformer_net import teacher_layer_map

INFO = DataInfo(
    name="tokens",
    input_shape=(6,),
    num_classes=3,
    input_dtype="int64",
    vocab_size=20,
    pad_token_id=0,
)
TEACHER_ARCH = {"layers": 4, "hidden": 16, "heads": 2, "ffn": 24, "pooling": "mean"}


@pytest.fixture
def teacher_path(tmp_path: Path) -> Path:
    torch.manual_seed(1)
    model = TransformerSpace().build(TEACHER_ARCH, INFO)
    return save_checkpoint(
        tmp_path / "teacher.pt", space="transformer", arch=TEACHER_ARCH, info=INFO, model=model
    )


def _student_space(**params: Any) -> TransformerSpace:
    return TransformerSpace(TransformerSpace.Params(init_from_teacher=True, **params))


def _sample(space: TransformerSpace, seed: int = 0) -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
    extra = space.suggest(trial, INFO)
    return {**trial.params, **(extra or {})}


def test_teacher_layer_map_takes_every_other_layer() -> None:
    assert teacher_layer_map(12, 6) == [0, 2, 4, 6, 8, 10]
    assert teacher_layer_map(4, 4) == [0, 1, 2, 3]
    assert teacher_layer_map(5, 2) == [0, 2]
    with pytest.raises(ValueError):
        teacher_layer_map(2, 3)


def test_student_copies_a_subset_of_the_teacher_layers(teacher_path: Path) -> None:
    space = _student_space()
    # The search's checkpoint teacher is found through its `path` parameter.
    space.bind_teacher(CheckpointTeacher(CheckpointTeacher.Params(path=str(teacher_path))))
    for seed in range(6):
        arch = _sample(space, seed)
        # Only layers (up to the teacher's 4) and dropout are sampled; sizes are the teacher's.
        assert 1 <= arch["layers"] <= 4 and arch["init_from_teacher"] is True
        assert {k: arch[k] for k in ("hidden", "heads", "ffn")} == {
            "hidden": 16,
            "heads": 2,
            "ffn": 24,
        }
    teacher = TransformerSpace().build(TEACHER_ARCH, INFO)
    teacher.load_state_dict(torch.load(teacher_path, weights_only=True)["state_dict"])
    arch = {**_sample(space), "layers": 2}
    student = space.build(arch, INFO)
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        source = key
        if key.startswith("layers."):
            _, index, rest = key.split(".", 2)
            source = f"layers.{[0, 2][int(index)]}.{rest}"
        assert torch.equal(value, t_state[source]), key
    x = torch.randint(1, 20, (3, 6))
    student.eval()
    assert student(x).shape == (3, 3)


def test_scratch_and_rebuild_do_not_copy(teacher_path: Path) -> None:
    space = _student_space(teacher_path=str(teacher_path))
    space.bind_teacher(None)
    arch = {**_sample(space), "layers": 2}
    teacher_embed = torch.load(teacher_path, weights_only=True)["state_dict"]["embed.weight"]
    torch.manual_seed(5)
    scratch = space.build({**arch, "init_from_teacher": False}, INFO)
    assert not torch.equal(scratch.state_dict()["embed.weight"], teacher_embed)
    # Rebuilding a saved student (a fresh space, as kdforge.checkpoint does) needs no teacher.
    rebuilt = TransformerSpace().build(arch, INFO)
    assert not torch.equal(rebuilt.state_dict()["embed.weight"], teacher_embed)


def test_incompatible_teachers_are_config_errors(tmp_path: Path, teacher_path: Path) -> None:
    image = DataInfo(name="digits", input_shape=(1, 8, 8), num_classes=10)
    mlp_arch = {"depth": 1, "width_0": 8}
    mlp = save_checkpoint(
        tmp_path / "mlp.pt",
        space="mlp",
        arch=mlp_arch,
        info=image,
        model=MLPSpace().build(mlp_arch, image),
    )
    with pytest.raises(ConfigError, match="'mlp', not 'transformer'") as caught:
        _student_space(teacher_path=str(mlp)).bind_teacher(None)
    assert "Hugging Face" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="min_layers"):
        _student_space(min_layers=5, max_layers=6, teacher_path=str(teacher_path)).bind_teacher(
            None
        )
    with pytest.raises(ConfigError, match="teacher_path"):
        _student_space().bind_teacher(None)
    with pytest.raises(ConfigError, match="no teacher was bound"):
        _sample(_student_space())


def test_token_inputs_need_a_vocabulary() -> None:
    no_vocab = DataInfo(name="tokens", input_shape=(6,), num_classes=3, input_dtype="int64")
    trial = optuna.create_study().ask()
    with pytest.raises(ConfigError, match="vocab_size"):
        TransformerSpace().suggest(trial, no_vocab)
    arch = _sample(TransformerSpace(TransformerSpace.Params(vocab_size=9)))
    assert arch["vocab_size"] == 9
    assert TransformerSpace().build(arch, no_vocab).embed.num_embeddings == 9


def test_define_by_run_keeps_sampled_values_next_to_constants(teacher_path: Path) -> None:
    """Constants of ``suggest`` (teacher sizes) and sampled values both reach the trial."""
    space = _student_space(teacher_path=str(teacher_path))
    space.bind_teacher(None)
    define = DefineByRun(space, INFO, Range(low=1e-3, high=1e-2, log=True), [])
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    constants = define(trial) or {}
    config = unflatten_dict({**trial.params, **constants})  # what Ray's OptunaSearch does
    student = config["student"]
    assert student["layers"] == trial.params["student/layers"]
    assert student["hidden"] == 16 and student["init_from_teacher"] is True
