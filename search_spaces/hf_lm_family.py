"""Hugging Face model families an ``hf_lm`` student can be built in, and their configs.

A student is of its teacher's family: the teacher's ``config.json`` is copied and only
the sizes change. Families name their sizes differently (GPT-2 ``n_layer``/``n_embd``/
``n_head``/``n_inner``, BERT ``num_hidden_layers``/``hidden_size``/
``num_attention_heads``/``intermediate_size``), so :data:`FAMILIES` names them per
``model_type``; a family not in it is refused with the list of those that are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kdforge.errors import ConfigError

__all__ = [
    "FAMILIES",
    "Family",
    "StudentSizes",
    "build_model",
    "family_of",
    "read_teacher_config",
    "student_config",
    "teacher_sizes",
]


@dataclass(frozen=True)
class Family:
    """How one ``model_type`` names its sizes and which head it is distilled with.

    Attributes:
        mode: ``causal`` (``AutoModelForCausalLM``) or ``masked`` (``AutoModelForMaskedLM``).
        layers: Config attribute of the number of layers.
        hidden: Config attribute of the hidden (residual) size.
        heads: Config attribute of the number of attention heads.
        intermediate: Config attribute of the feed-forward size.
        default_intermediate: Feed-forward size per hidden unit when the attribute is
            None (GPT-2's ``n_inner: null`` means ``4 * n_embd``).
        prunable: Whether ``init: prune`` can slice this family's weights.
    """

    mode: Literal["causal", "masked"]
    layers: str
    hidden: str
    heads: str
    intermediate: str
    default_intermediate: int = 4
    prunable: bool = False


_BERT_LIKE = Family(
    "masked", "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size"
)

#: The supported families by ``model_type``.
FAMILIES: dict[str, Family] = {
    "gpt2": Family("causal", "n_layer", "n_embd", "n_head", "n_inner", prunable=True),
    "bert": _BERT_LIKE,
    "roberta": _BERT_LIKE,
}


@dataclass(frozen=True)
class StudentSizes:
    """The searched sizes of one student (or a teacher's own)."""

    layers: int
    hidden: int
    heads: int
    intermediate: int


def read_teacher_config(folder: str | Path, where: str) -> dict[str, Any]:
    """The teacher folder's ``config.json`` as a dict.

    Raises:
        ConfigError: no such folder or no ``config.json`` in it.
    """
    path = Path(folder).expanduser() / "config.json"
    if not path.is_file():
        raise ConfigError(
            f"{where}: {folder} is not a Hugging Face model folder (no config.json)",
            hint="point it at a folder written by save_pretrained (the teacher's)",
        )
    return dict(json.loads(path.read_text(encoding="utf-8")))


def family_of(config: dict[str, Any], where: str) -> Family:
    """The :class:`Family` of a config dict.

    Raises:
        ConfigError: a ``model_type`` not in :data:`FAMILIES`.
    """
    kind = str(config.get("model_type"))
    if kind not in FAMILIES:
        raise ConfigError(
            f"{where}: teacher family {kind!r} is not supported; supported: "
            f"{', '.join(sorted(FAMILIES))}",
            hint="distil a teacher of a supported family, or use the `transformer` space",
        )
    return FAMILIES[kind]


def teacher_sizes(config: dict[str, Any], family: Family) -> StudentSizes:
    """The teacher's own layers, hidden size, heads and feed-forward size."""
    hidden = int(config[family.hidden])
    inner = config.get(family.intermediate)
    return StudentSizes(
        layers=int(config[family.layers]),
        hidden=hidden,
        heads=int(config[family.heads]),
        intermediate=int(inner) if inner else family.default_intermediate * hidden,
    )


def student_config(
    teacher: dict[str, Any], family: Family, sizes: StudentSizes, vocab_size: int
) -> dict[str, Any]:
    """The teacher's config dict with the student's sizes and vocabulary size.

    Weights-only keys the student does not share (``architectures`` stays: it says
    which head class the folder holds; ``_name_or_path`` goes: the student has none).
    """
    config = {
        k: v for k, v in teacher.items() if k not in ("_name_or_path", "transformers_version")
    }
    config[family.layers] = sizes.layers
    config[family.hidden] = sizes.hidden
    config[family.heads] = sizes.heads
    config[family.intermediate] = sizes.intermediate
    config["vocab_size"] = vocab_size
    return config


def build_model(config: dict[str, Any]) -> Any:
    """A freshly initialised ``*ForCausalLM`` / ``*ForMaskedLM`` of a config dict."""
    # transformers is the optional [hf] extra; only LM students need it.
    import transformers

    family = FAMILIES[str(config["model_type"])]
    values = {k: v for k, v in config.items() if k != "model_type"}
    hf_config = transformers.AutoConfig.for_model(str(config["model_type"]), **values)
    auto = (
        transformers.AutoModelForCausalLM
        if family.mode == "causal"
        else transformers.AutoModelForMaskedLM
    )
    return auto.from_config(hf_config)
