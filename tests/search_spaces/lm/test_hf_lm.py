"""The ``hf_lm`` space: students of the teacher's family, teacher initialisation, refusals.

Real transformers models built from configs and trained a few steps on a stdlib corpus
(kdforge.testing.lm); nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from kdforge.errors import ConfigError
from kdforge.search_spaces.hf_lm import HfLMParams, HfLMSpace
from kdforge.testing import SearchSpaceContract
from kdforge.testing.lm import token_blocks
from tests.search_spaces.lm.conftest import (
    BLOCK,
    VOCAB,
    bound_space,
    lm_info,
    lm_splits,
    sample_arch,
)


def _teacher(folder: Path, mode: str = "causal") -> Any:
    import transformers

    auto = (
        transformers.AutoModelForCausalLM if mode == "causal" else transformers.AutoModelForMaskedLM
    )
    return auto.from_pretrained(str(folder), local_files_only=True).eval()


class TestHfLMContract(SearchSpaceContract):
    """The shared search-space contract on a bound space (random and trimmed students)."""

    registered_name = "hf_lm"
    num_samples = 3
    data_infos = ()

    @pytest.fixture
    def plugin(self, gpt: Path, corpus: torch.Tensor) -> HfLMSpace:
        type(self).data_infos = (lm_info(),)
        return bound_space(gpt, lm_splits(corpus), vocab="searched", max_layers=2)

    def check_sample(self, plugin, arch, model, info) -> None:
        assert arch["hidden"] % arch["heads"] == 0
        assert model.model.config.n_layer == arch["layers"]


def test_widths_are_fractions_of_the_teacher(gpt: Path, corpus: torch.Tensor) -> None:
    space = bound_space(gpt, lm_splits(corpus))
    arch = sample_arch(space, {"layers": 2, "hidden": 16, "heads_h16": 2, "intermediate": 64})
    config = json.loads(arch["_recipe"])["config"]
    assert (config["n_layer"], config["n_embd"], config["n_head"], config["n_inner"]) == (
        2,
        16,
        2,
        64,
    )
    trial = optuna.create_study().ask()
    space.suggest(trial, lm_info())
    assert trial.distributions["hidden"].choices == (8, 16, 24, 32)  # teacher/4 .. teacher
    assert trial.distributions["intermediate"].choices == (32, 64, 96, 128)
    assert trial.distributions["layers"].high == 4


def test_layers_init_takes_every_other_teacher_layer(gpt: Path, corpus: torch.Tensor) -> None:
    space = bound_space(gpt, lm_splits(corpus), init="layers")
    arch = sample_arch(space, {"layers": 2})
    assert arch["kept_layers"] == [0, 2] and arch["hidden"] == 32
    student = space.build(arch, lm_info()).model
    teacher = _teacher(gpt)
    for i, j in enumerate([0, 2]):
        torch.testing.assert_close(
            student.transformer.h[i].attn.c_attn.weight, teacher.transformer.h[j].attn.c_attn.weight
        )
    torch.testing.assert_close(student.transformer.wte.weight, teacher.transformer.wte.weight)
    full = space.build(sample_arch(space, {"layers": 4}), lm_info()).eval()
    torch.testing.assert_close(full(corpus[:3]), teacher(input_ids=corpus[:3]).logits)


def test_searched_layer_subset(gpt: Path, corpus: torch.Tensor) -> None:
    space = bound_space(gpt, lm_splits(corpus), init="layers", layer_selection="searched")
    flags = {f"keep_layer_{i}": i in (1, 3) for i in range(4)}
    arch = sample_arch(space, flags)
    assert arch["kept_layers"] == [1, 3] and arch["layers"] == 2
    student = space.build(arch, lm_info()).model
    teacher = _teacher(gpt)
    torch.testing.assert_close(
        student.transformer.h[1].mlp.c_fc.weight, teacher.transformer.h[3].mlp.c_fc.weight
    )


def test_prune_keeping_everything_is_the_teacher(gpt: Path, corpus: torch.Tensor) -> None:
    space = bound_space(gpt, lm_splits(corpus), init="prune")
    arch = sample_arch(space, {"layers": 4, "heads": 4, "intermediate": 128})
    student = space.build(arch, lm_info()).eval()
    with torch.no_grad():
        torch.testing.assert_close(
            student(corpus[:4]), _teacher(gpt)(input_ids=corpus[:4]).logits, atol=1e-5, rtol=1e-5
        )


def test_pruned_student_is_smaller_and_better_than_random(gpt: Path, corpus: torch.Tensor) -> None:
    splits = lm_splits(corpus)
    values = {"layers": 2, "heads": 2, "intermediate": 64}
    pruned_space = bound_space(gpt, splits, init="prune")
    pruned = pruned_space.build(sample_arch(pruned_space, values), lm_info()).eval()
    random_space = bound_space(gpt, splits)
    torch.manual_seed(0)
    random = random_space.build(
        sample_arch(random_space, {**values, "hidden": 16, "heads_h16": 2}), lm_info()
    ).eval()
    teacher = _teacher(gpt)
    sizes = [sum(p.numel() for p in m.parameters()) for m in (pruned, teacher)]
    assert sizes[0] < sizes[1] / 2
    assert pruned.model.config.n_embd == 16 and pruned.model.config.n_head == 2

    def cross_entropy(model: Any) -> float:
        x, y = splits.val.x, splits.val.y
        with torch.no_grad():
            logits = model(x)
        return float(
            torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), y.flatten().clamp_min(-1), ignore_index=-1
            )
        )

    assert cross_entropy(pruned) < cross_entropy(random)


def test_masked_family_builds_bert_students_from_layers(bert: Path, texts: list[str]) -> None:
    x = token_blocks(texts, bert, BLOCK)
    space = bound_space(bert, lm_splits(x, causal=False), init="layers")
    assert space.causal is False
    arch = sample_arch(space, {"layers": 1})
    student = space.build(arch, lm_info()).eval()
    assert type(student.model).__name__ == "BertForMaskedLM"
    assert student(x[:2]).shape == (2, BLOCK, VOCAB["n"])


def test_a_masked_family_is_refused_for_next_token_data(bert: Path, texts: list[str]) -> None:
    x = token_blocks(texts, bert, BLOCK)
    with pytest.raises(ConfigError, match="masked LM"):
        bound_space(bert, lm_splits(x))


def test_prune_is_refused_for_bert(bert: Path) -> None:
    with pytest.raises(ConfigError, match="prune supports the gpt2"):
        HfLMSpace(HfLMParams(teacher_path=str(bert), init="prune"))


def test_a_teacher_without_a_tokenizer_is_refused(gpt: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(gpt / name, bare / name)
    with pytest.raises(ConfigError, match="has no tokenizer, so a student cannot share it"):
        HfLMSpace(HfLMParams(teacher_path=str(bare)))


def test_an_unsupported_family_is_refused(gpt: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(gpt, other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "model_type": "t5"}))
    with pytest.raises(ConfigError, match=r"'t5' is not supported; supported: bert, gpt2"):
        HfLMSpace(HfLMParams(teacher_path=str(other)))


def test_another_vocabulary_size_is_refused_without_trimming(gpt: Path) -> None:
    with pytest.raises(ConfigError, match="not the vocabulary of the tokenizer"):
        HfLMSpace(HfLMParams(teacher_path=str(gpt), vocab_size=100))


def test_no_teacher_folder_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a Hugging Face model folder"):
        HfLMSpace().bind_teacher(None)


def test_the_scratch_baseline_gets_no_teacher_weights(gpt: Path, corpus: torch.Tensor) -> None:
    space = bound_space(gpt, lm_splits(corpus), init="layers")
    arch = sample_arch(space, {"layers": 4})
    teacher = _teacher(gpt).transformer.wte.weight
    copied = space.build(arch, lm_info()).model.transformer.wte.weight
    scratch = space.build({**arch, "init_from_teacher": False}, lm_info())
    torch.testing.assert_close(copied, teacher)
    assert not torch.allclose(scratch.model.transformer.wte.weight, teacher)


def test_binds_the_huggingface_teachers_folder(gpt: Path, bert: Path) -> None:
    from kdforge.config import PluginRef
    from kdforge.plugin_host.resolve import instantiate
    from kdforge.training.supported_tasks import require_causal_space

    causal = instantiate("task", PluginRef(name="language_modeling"), "task")
    for folder, is_causal in ((gpt, True), (bert, False)):
        teacher = instantiate(
            "teacher", PluginRef(name="huggingface", params={"path": str(folder)}), "teacher"
        )
        space = HfLMSpace()
        space.bind_teacher(teacher)  # reads the teacher's folder, without loading it
        assert space.causal is is_causal
        if is_causal:
            require_causal_space(causal, space, "student space 'hf_lm'")
        else:
            with pytest.raises(ConfigError, match="would read its answer"):
                require_causal_space(causal, space, "student space 'hf_lm'")
