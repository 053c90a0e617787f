"""The per-position top-k teacher cache of language models, and the online teacher.

A tiny GPT-2 teacher is trained from a config on the standard library's docstrings
(``kdforge.testing.lm``, no downloads) and held by the ``in_memory`` teacher; its
``(n, T, V)`` logits are cached as the k largest per position plus the log-sum-exp.
"""

from __future__ import annotations

import pickle
import shutil
from collections import namedtuple
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from kdforge.config import SearchConfig
from kdforge.config.teacher_cache_settings import TeacherCacheSettings
from kdforge.data import NOT_A_WORD, DataInfo, DataSplits, ModelOutput, Split, TopKLogits
from kdforge.errors import ConfigError
from kdforge.plugins.losses.lm_kd import LMKD, LMKDParams
from kdforge.plugins.tasks.language_modeling import LanguageModeling
from kdforge.plugins.teachers.in_memory import InMemoryTeacher
from kdforge.search.plan import plan_search
from kdforge.search.run import with_task
from kdforge.teacher import cache as cache_module
from kdforge.teacher.cache import estimate_cache_size, prepare_teacher_outputs
from kdforge.teacher.cached_rows import CachedRows, save_rows
from kdforge.teacher.outputs import compute_teacher_outputs
from kdforge.testing.lm import python_docstrings, tiny_lm, token_blocks
from kdforge.training.trainer import TrainResult, TrainSettings, train_model

BLOCK = 16


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory) -> tuple[InMemoryTeacher, DataSplits]:
    """A briefly trained GPT-2 teacher and causal-LM splits of its corpus."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("lm") / "teacher"
    texts = python_docstrings(limit=150, packages=("json", "email", "csv", "argparse"))
    tiny_lm(folder, "causal", texts, hidden=32, layers=1, steps=30, vocab_size=300, block=BLOCK)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    vocab = int(model.config.vocab_size)
    x = token_blocks(texts, folder, BLOCK)[:60]
    y = torch.full_like(x, NOT_A_WORD)
    y[:, :-1] = x[:, 1:]  # causal: each position predicts the next token
    info = DataInfo(
        name="docstrings",
        input_shape=(BLOCK,),
        num_classes=vocab,
        input_dtype="int64",
        vocab_size=vocab,
        pad_token_id=0,
        task="language_modeling",
    )
    splits = DataSplits(
        info, Split(x[:40], y[:40]), Split(x[40:50], y[40:50]), Split(x[50:], y[50:])
    )
    teacher = InMemoryTeacher(InMemoryTeacher.Params(key=InMemoryTeacher.hold(model)))
    teacher.load()
    return teacher, splits


def _prepare(teacher: Any, splits: DataSplits, folder: Path, lines: list[str], **settings: Any):
    return prepare_teacher_outputs(
        teacher, splits, TeacherCacheSettings(**settings), cache_dir=folder, emit=lines.append
    )


def _student(vocab: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(vocab, 16), nn.Linear(16, vocab))


def _loss(divergence: str = "forward_kl") -> LMKD:
    loss = LMKD(LMKDParams(divergence=divergence), {"alpha": 0.7, "temperature": 1.0})  # type: ignore[arg-type]
    loss.task = LanguageModeling()
    return loss


def _train_lm(
    model: nn.Module, splits: DataSplits, loss: LMKD, *, epochs: int, lr: float, **teacher: Any
) -> TrainResult:
    """train_model on the LM splits with ``loss`` and the given teacher outputs."""
    return train_model(
        model,
        x=splits.train.x,
        y=splits.train.y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=epochs, lr=lr, batch_size=16, seed=0),
        loss=loss,
        task=LanguageModeling(),
        **teacher,
    )


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_rows_round_trip_as_top_k_with_log_sum_exp(tmp_path: Path, dtype: str) -> None:
    logits = torch.randn(5, 4, 50) * 3
    spec = save_rows(tmp_path, "logits_train", logits, dtype=dtype, top_k=8)
    assert spec["encoding"] == "topk_lse" and spec["k"] == 8
    stored = np.load(tmp_path / "logits_train.values.npy")
    # numpy has no bfloat16: its bit patterns are kept as uint16.
    assert (
        stored.dtype == {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}[dtype]
    )
    assert np.load(tmp_path / "logits_train.indices.npy").dtype == np.int32
    assert np.load(tmp_path / "logits_train.lse.npy").dtype == np.float32
    rows = pickle.loads(pickle.dumps(CachedRows.from_spec(tmp_path, spec)))
    top = rows[torch.tensor([4, 1])]
    assert isinstance(top, TopKLogits) and top.shape == (2, 4, 50) and top.k == 8
    expected = TopKLogits.from_logits(logits[[4, 1]], 8)
    tolerance = {"float32": 0.0, "float16": 1e-2, "bfloat16": 5e-2}[dtype]
    torch.testing.assert_close(top.values, expected.values, atol=tolerance, rtol=tolerance)
    assert torch.equal(top.indices, expected.indices)
    torch.testing.assert_close(top.lse, torch.logsumexp(logits[[4, 1]], -1))
    # Dense (for metrics only): the kept logits, the rest sharing the remaining mass.
    dense = rows.dense()
    torch.testing.assert_close(
        torch.logsumexp(dense, -1), torch.logsumexp(logits, -1), atol=tolerance + 1e-5, rtol=1e-3
    )
    assert isinstance(rows.to("cpu")[0:2], TopKLogits) and rows.float() is rows


def test_cache_is_sized_printed_and_read_sparse_by_the_trainer(tmp_path: Path, lm) -> None:
    teacher, splits = lm
    vocab = splits.info.num_classes
    lines: list[str] = []
    outputs = _prepare(teacher, splits, tmp_path / "cache", lines, top_k=8, dtype="float16")
    rows = 60
    expected = rows * BLOCK * (8 * (2 + 4) + 4)
    assert (
        estimate_cache_size(splits, TeacherCacheSettings(top_k=8, dtype="float16"))[0] == expected
    )
    printed = "\n".join(lines)
    assert f"{rows} rows x {BLOCK} positions x (k=8" in printed and "KiB" in printed
    stored = sum(f.stat().st_size for f in (tmp_path / "cache").rglob("*.npy"))
    assert expected <= stored < expected + 20 * 1024  # + the .npy headers
    train = outputs.train
    assert isinstance(train, CachedRows) and train.sparse
    assert outputs.val.shape == (10, BLOCK, vocab)  # dense, for the teacher's perplexity
    # Better than a uniform guess (the rest mass is spread over the other tokens).
    assert 1.0 < outputs.accuracy(splits, LanguageModeling())["val"] < vocab
    # The trainer indexes, moves and reads the sparse rows; the student learns.
    model = _student(vocab)
    result = _train_lm(model, splits, _loss("gjsd"), epochs=3, lr=2e-2, teacher_logits=train)
    losses = [r.train_loss for r in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_object_store_sharing_gives_the_sparse_rows_in_memory(tmp_path: Path, lm) -> None:
    """share: object_store (clusters) ships the top-k rows as tensors, not densified."""
    teacher, splits = lm
    settings = TeacherCacheSettings(top_k=8)
    outputs = prepare_teacher_outputs(
        teacher, splits, settings, cache_dir=tmp_path, emit=lambda _: None, share="object_store"
    )
    train = pickle.loads(pickle.dumps(outputs.train))  # as Ray's object store carries it
    assert isinstance(train, TopKLogits) and train.values.shape == (40, BLOCK, 8)
    rows = train.to("cpu")[torch.tensor([3, 0])]
    assert rows.shape == (2, BLOCK, splits.info.num_classes)


def test_top_k_is_encoded_batch_by_batch_while_the_teacher_runs(lm) -> None:
    """The dense (n, T, V) logits of a split are never held: each batch is encoded."""
    teacher, splits = lm
    outputs = compute_teacher_outputs(teacher, splits, batch_size=16, top_k=8)
    assert isinstance(outputs.train, TopKLogits) and outputs.train.values.shape == (40, BLOCK, 8)
    dense = compute_teacher_outputs(teacher, splits, batch_size=16).train
    expected = TopKLogits.from_logits(dense, 8)
    torch.testing.assert_close(outputs.train.values, expected.values)
    torch.testing.assert_close(outputs.train.lse, expected.lse)


def test_full_vocabulary_cache_trains_exactly_as_the_dense_logits(tmp_path: Path, lm) -> None:
    """k = V (float32): the top-k loss equals the full-vocabulary loss, step for step."""
    teacher, splits = lm
    vocab = splits.info.num_classes
    cached = _prepare(teacher, splits, tmp_path / "c", [], top_k=vocab).train
    dense = _prepare(teacher, splits, tmp_path / "d", []).train.materialize()
    assert isinstance(cached[0:1], TopKLogits) and isinstance(dense, torch.Tensor)
    states = []
    for logits in (cached, dense):
        model = _student(vocab)
        _train_lm(model, splits, _loss("reverse_kl"), epochs=1, lr=1e-2, teacher_logits=logits)
        states.append(model.state_dict())
    for name, value in states[0].items():
        torch.testing.assert_close(value, states[1][name], atol=1e-5, rtol=1e-4)
    # One batch, loss by loss: k = V is exact, k = 32 close.
    idx = torch.arange(16)
    student = _student(vocab)(splits.train.x[idx]).detach()
    full = _loss()(ModelOutput(student), ModelOutput(dense[idx]), splits.train.y[idx])
    exact = _loss()(ModelOutput(student), ModelOutput(cached[idx]), splits.train.y[idx])
    assert exact.parts["kd"] == pytest.approx(full.parts["kd"], rel=1e-5)


def test_a_cache_that_does_not_fit_on_disk_is_refused(
    tmp_path: Path, lm, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher, splits = lm
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda _: Usage(10**6, 10**6, 1000))
    with pytest.raises(ConfigError, match="needs about") as caught:
        _prepare(teacher, splits, tmp_path / "cache", [], top_k=8)
    assert "top_k" in str(caught.value.hint) and "online" in str(caught.value.hint)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    monkeypatch.setattr(cache_module.shutil, "disk_usage", shutil.disk_usage)


def test_an_lm_loss_trains_with_the_online_teacher(tmp_path: Path, lm) -> None:
    teacher, splits = lm
    lines: list[str] = []
    outputs = _prepare(teacher, splits, tmp_path / "cache", lines, mode="online", top_k=8)
    assert outputs.online_teacher is not None and len(outputs.train) == 0
    assert "teacher_cache.mode: online" in "\n".join(lines)
    assert not (tmp_path / "cache").exists()  # nothing stored
    assert outputs.has_logits and outputs.val.shape[1:] == (BLOCK, splits.info.num_classes)
    model = _student(splits.info.num_classes)
    result = _train_lm(
        model,
        splits,
        _loss(),
        epochs=3,
        lr=2e-2,
        teacher_logits=outputs.train,
        online_teacher=outputs.online_teacher,
    )
    losses = [r.train_loss for r in result.history]
    assert outputs.online_teacher.calls == 3 * 3  # every batch of every epoch
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def _search_config(tmp_path: Path, loss: dict[str, Any]) -> SearchConfig:
    # A masked LM (the transformer space reads both directions): targets at 2 positions.
    x = np.random.default_rng(0).integers(0, 20, size=(30, 8))
    y = np.full_like(x, NOT_A_WORD)
    y[:, 2:4] = x[:, 2:4]
    x[:, 2:4] = 19
    np.savez(tmp_path / "lm.npz", x=x, y=y)
    return SearchConfig.model_validate(
        {
            "name": "lm",
            "output_dir": str(tmp_path / "runs"),
            "dataset": {
                "name": "arrays",
                "params": {
                    "path": str(tmp_path / "lm.npz"),
                    "task": "language_modeling",
                    "num_classes": 20,
                },
            },
            "task": {"name": "language_modeling", "params": {"mode": "masked"}},
            "teacher": {"name": "checkpoint", "params": {"path": str(tmp_path / "t.pt")}},
            "student": {"name": "transformer", "params": {"max_layers": 1}},
            "loss": loss,
            "teacher_cache": {"top_k": 4},
        }
    )


def test_only_losses_that_read_the_sparse_form_may_use_a_per_position_top_k(
    tmp_path: Path,
) -> None:
    for loss, refused in (
        ({"name": "hinton_kd"}, "hinton_kd"),
        (
            {"name": "composite", "params": {"terms": [{"name": "lm_kd"}, {"name": "logit_mse"}]}},
            "composite",
        ),
        ({"name": "lm_kd", "params": {"divergence": "gjsd"}}, None),
    ):
        plan = plan_search(_search_config(tmp_path, loss))
        splits = plan.dataset.load(0)
        if refused is None:
            with_task(plan, splits)
            continue
        with pytest.raises(ConfigError, match=f"loss '{refused}' cannot read per-position top-k"):
            with_task(plan, splits)


def test_triple_loss_trains_a_hf_student_on_tapped_hidden_states(lm) -> None:
    """lm_kd + label loss + lm_hidden_cosine between the GPT-2 teacher's and a narrower
    GPT-2 student's last hidden states (module paths tapped, a learned projection)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from kdforge.features import predict_with_taps
    from kdforge.plugins.losses.composite import Composite
    from kdforge.search_spaces.hf_lm_model import HuggingFaceLMStudent

    teacher, splits = lm
    vocab = splits.info.num_classes
    x, y = splits.train.x, splits.train.y
    out = predict_with_taps(teacher, x, ["transformer.ln_f"])
    assert out.logits is not None and out.features["transformer.ln_f"].shape == (40, BLOCK, 32)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=vocab, n_positions=BLOCK, n_embd=16, n_layer=1, n_head=2)
    student = HuggingFaceLMStudent(GPT2LMHeadModel(config), "causal", pad_token_id=0)
    params = Composite.Params.model_validate(
        {
            "terms": [
                {"name": "lm_kd", "key": "kd", "weight": 5.0, "hparams": {"alpha": 1.0}},
                {"name": "lm_kd", "key": "mlm", "weight": 2.0, "hparams": {"alpha": 0.0}},
                {
                    "name": "lm_hidden_cosine",
                    "key": "cos",
                    "params": {
                        "ce_weight": 0.0,
                        "layers": {"transformer.ln_f": "model.transformer.ln_f"},
                    },
                },
            ]
        }
    )
    loss = Composite(params, {"kd.temperature": 2.0})
    loss.task = LanguageModeling()
    result = train_model(
        student,
        x=x,
        y=y,
        val_x=splits.val.x,
        val_y=splits.val.y,
        settings=TrainSettings(epochs=3, lr=1e-2, batch_size=16, seed=0),
        loss=loss,
        teacher_logits=out.logits,
        teacher_features={k: v.detach() for k, v in out.features.items()},
        task=LanguageModeling(),
    )
    losses = [r.train_loss for r in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    (projection,) = loss.terms[2][2].parameters()[:1]
    assert projection.shape == (32, 16)  # nn.Linear(16 -> 32): student width to teacher's


def test_a_trimmed_student_vocabulary_refuses_a_top_k_cache_before_any_trial(
    tmp_path: Path,
) -> None:
    config = _search_config(tmp_path, {"name": "lm_kd"}).model_dump()
    config["student"] = {"name": "hf_lm", "params": {"vocab": "corpus"}}
    plan = plan_search(SearchConfig.model_validate(config))
    refused = r"space 'hf_lm' need .*dense logits .*trimmed vocabulary"
    with pytest.raises(ConfigError, match=refused) as err:
        with_task(plan, plan.dataset.load(0))
    assert "student.params.vocab: full" in (err.value.hint or "")
