"""Shared fixtures of the LM space tests: a tiny GPT-2 and BERT teacher on a stdlib corpus,
built once per session (a few seconds each; nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from kdforge.data import DataInfo, DataSplits, Split
from kdforge.search_spaces.hf_lm import HfLMParams, HfLMSpace
from kdforge.testing.lm import python_docstrings, tiny_lm, token_blocks

BLOCK = 16


def lm_splits(x: torch.Tensor, *, causal: bool = True) -> DataSplits:
    y = torch.cat([x[:, 1:], torch.full((len(x), 1), -2)], 1) if causal else x.clone()
    if not causal:  # masked: every 5th position masked and scored, the rest neither
        scored = torch.zeros_like(x, dtype=torch.bool)
        scored[:, ::5] = True
        y = torch.where(scored, x, torch.full_like(x, -2))
        x = torch.where(scored, torch.full_like(x, 4), x)
    info = lm_info()
    return DataSplits(info, Split(x, y), Split(x[:8], y[:8]), Split(x[8:16], y[8:16]))


def lm_info(vocab: int = 0) -> DataInfo:
    return DataInfo(
        name="lm",
        input_shape=(BLOCK,),
        num_classes=vocab or VOCAB["n"],
        input_dtype="int64",
        vocab_size=vocab or VOCAB["n"],
        pad_token_id=0,
        task="language_modeling",
    )


VOCAB: dict[str, int] = {"n": 0}


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return python_docstrings(160, packages=("json", "email"))


@pytest.fixture(scope="session")
def gpt(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    """A 4-layer GPT-2 teacher (hidden 32, 4 heads), trained briefly."""
    folder = tiny_lm(
        tmp_path_factory.mktemp("gpt"), "causal", texts, layers=4, heads=4, block=BLOCK, steps=40
    )
    VOCAB["n"] = json.loads((folder / "config.json").read_text())["vocab_size"]
    return folder


@pytest.fixture(scope="session")
def bert(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    return tiny_lm(tmp_path_factory.mktemp("bert"), "masked", texts, block=BLOCK, steps=5)


@pytest.fixture(scope="session")
def corpus(gpt: Path, texts: list[str]) -> torch.Tensor:
    return token_blocks(texts, gpt, BLOCK)


def bound_space(folder: Path, splits: DataSplits | None = None, **params: Any) -> HfLMSpace:
    space = HfLMSpace(HfLMParams(teacher_path=str(folder), **params))
    space.bind_teacher(None)
    if splits is not None:
        space.bind_data(splits)
    return space


def sample_arch(space: HfLMSpace, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """One architecture: fixed ``values``, or a random point."""
    if values is not None:
        trial: Any = optuna.trial.FixedTrial(values)
    else:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    extra = space.suggest(trial, lm_info())
    return {**trial.params, **(extra or {})}
