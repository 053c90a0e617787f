"""Search space ``hf_lm``: language-model students of the teacher's own Hugging Face family.

The teacher is a local Hugging Face folder (``config.json``, weights, tokenizer): the
``huggingface`` teacher's folder, or ``teacher_path``. A student copies the teacher's
config and changes its sizes (:mod:`kdforge.search_spaces.hf_lm_family`: GPT-2, BERT,
RoBERTa), is built with ``AutoModelForCausalLM`` / ``AutoModelForMaskedLM.from_config``
and wrapped in :class:`~kdforge.search_spaces.hf_lm_model.HuggingFaceLMStudent`. It
shares the teacher's tokenizer: a teacher folder without one, or a declared vocabulary
size that is not the tokenizer's, is refused.

Searched, as fractions of the teacher's sizes by default (``width_fractions``): the
number of layers (``min_layers`` .. the teacher's), the hidden size, the heads (among
those dividing it) and the feed-forward size. ``init`` starts students from the
teacher (:mod:`kdforge.search_spaces.hf_lm_init`):

* ``random``: a fresh model of the sampled sizes;
* ``layers``: the teacher's widths, fewer layers copied from it (``layer_selection``:
  ``every_other`` as DistilBERT, ``first``, ``last``, or ``searched``: one yes/no per
  teacher layer); only the depth is searched;
* ``prune``: Minitron-style activation-based width pruning (GPT-2 family): heads (the
  hidden size follows: heads x the teacher's head size) and feed-forward size are
  searched, the most important channels, heads and neurons on a calibration batch of
  the training data are kept, then layers are dropped as ``layer_selection`` says.

Vocabulary trimming (``vocab: corpus``, or ``searched`` between ``full`` and
``corpus``): the student keeps only the tokens seen at least ``min_count`` times in the
training corpus plus the special tokens; it still takes original ids, its logits are
over the kept tokens, and the trainer renormalises the teacher over them
(:class:`kdforge.data.VocabularyTrim`).

Everything a checkpoint needs to rebuild a student (its config, tokenizer folder and
kept ids) is in the architecture's ``_recipe`` entry, so ``build(arch, info)`` on a
space with default params rebuilds it without the teacher.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

import kdforge
from kdforge.batching import iter_batches
from kdforge.data import DataInfo, DataSplits
from kdforge.errors import ConfigError
from kdforge.interfaces import PluginParams, SearchSpace, Teacher
from kdforge.search_spaces.hf_lm_family import (
    FAMILIES,
    Family,
    StudentSizes,
    build_model,
    family_of,
    read_teacher_config,
    student_config,
    teacher_sizes,
)
from kdforge.search_spaces.hf_lm_init import (
    Importance,
    gpt2_importance,
    init_from_teacher,
    prune_choice,
    select_layers,
)
from kdforge.search_spaces.hf_lm_model import HuggingFaceLMStudent
from kdforge.search_spaces.hf_lm_tokenizer import TRIMMABLE_MODELS, tokenizer_model_type
from kdforge.search_spaces.hf_lm_vocab import TokenizerFacts, corpus_vocabulary, tokenizer_facts

__all__ = ["HfLMParams", "HfLMSpace"]

_WHERE = "student space 'hf_lm'"

#: What an unbound space samples over (GPT-2 small), only to name its searched values.
_NOMINAL = StudentSizes(layers=12, hidden=768, heads=12, intermediate=3072)


class HfLMParams(PluginParams):
    """Ranges, initialisation and vocabulary of the ``hf_lm`` search space."""

    teacher_path: str | None = Field(
        None,
        description="Hugging Face teacher folder (config.json, weights, tokenizer); default: "
        "the folder of the search's `huggingface` teacher.",
    )
    min_layers: int = Field(1, ge=1, description="Fewest layers.")
    max_layers: int | None = Field(
        None, ge=1, description="Most layers (default and cap with init: the teacher's)."
    )
    width_fractions: list[float] = Field(
        default_factory=lambda: [0.25, 0.5, 0.75, 1.0],
        min_length=1,
        description="Hidden sizes, head counts and feed-forward sizes offered, as "
        "fractions of the teacher's (unless given explicitly below).",
    )
    hidden_sizes: list[int] | None = Field(None, description="Hidden sizes (overrides fractions).")
    heads: list[int] | None = Field(
        None, description="Head counts (overrides fractions); only divisors of hidden are offered."
    )
    intermediate_sizes: list[int] | None = Field(
        None, description="Feed-forward sizes (overrides fractions)."
    )
    init: Literal["random", "layers", "prune"] = Field(
        "random",
        description="random: fresh weights; layers: the teacher's widths, layers copied "
        "(DistilBERT); prune: Minitron-style activation-based width pruning (GPT-2).",
    )
    layer_selection: Literal["every_other", "first", "last", "searched"] = Field(
        "every_other",
        description="Which teacher layers an initialised student keeps (searched: one "
        "yes/no per teacher layer).",
    )
    vocab: Literal["full", "corpus", "searched"] = Field(
        "full",
        description="full: the tokenizer's vocabulary; corpus: only tokens of the training "
        "corpus (+ special tokens); searched: a choice between the two.",
    )
    min_count: int = Field(
        1, ge=1, description="vocab corpus: keep tokens seen at least this often."
    )
    vocab_size: int | None = Field(
        None,
        ge=1,
        description="Declared student vocabulary size: must be the tokenizer's (the student "
        "shares it) unless the vocabulary is trimmed.",
    )
    calibration_rows: int = Field(
        32, ge=1, description="init prune: training rows the importance scores are measured on."
    )

    @field_validator("width_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < f <= 1 for f in value):
            raise ValueError(f"width_fractions must lie in (0, 1], got {value}")
        return value

    @model_validator(mode="after")
    def _check(self) -> HfLMParams:
        if self.max_layers is not None and self.min_layers > self.max_layers:
            raise ValueError(f"min_layers ({self.min_layers}) > max_layers ({self.max_layers})")
        for name in ("hidden_sizes", "heads", "intermediate_sizes"):
            values = getattr(self, name)
            if values is not None and (not values or any(v < 1 for v in values)):
                raise ValueError(f"{name} must be a non-empty list of positive sizes")
        return self


@lru_cache(maxsize=2)
def _teacher_state(folder: str, mtime: float, mode: str) -> dict[str, torch.Tensor]:
    """The teacher's weights (cached per process: trials reuse workers)."""
    return dict(_load_teacher(folder, mode).state_dict())


def _load_teacher(folder: str, mode: str) -> Any:
    """The teacher's ``*ForCausalLM`` / ``*ForMaskedLM``, offline, in eval mode."""
    # transformers is the optional [hf] extra; only LM students need it.
    import transformers

    auto = (
        transformers.AutoModelForCausalLM if mode == "causal" else transformers.AutoModelForMaskedLM
    )
    return auto.from_pretrained(folder, local_files_only=True).eval()


def _weights_mtime(folder: str) -> float:
    files = list(Path(folder).glob("*.safetensors")) or [Path(folder) / "config.json"]
    return max(f.stat().st_mtime for f in files)


def _sizes_from(fractions: list[float], whole: int) -> list[int]:
    return sorted({max(1, round(f * whole)) for f in fractions})


class HfLMSpace(SearchSpace):
    """Students of the teacher's Hugging Face family: layers, widths, init, vocabulary."""

    name = "hf_lm"
    Params = HfLMParams
    per_position = True

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        assert isinstance(p, HfLMParams)
        self._folder: str | None = None
        self._config: dict[str, Any] | None = None
        self._family: Family | None = None
        self._tokenizer: TokenizerFacts | None = None
        self._kept: list[int] | None = None
        self._importance: Importance | None = None
        # Whether students are causal is the teacher's family's; until a teacher is
        # bound it is provisionally yes, and bind_data refuses causal data for a masked
        # family (the data shows its mode: targets that are the next input tokens).
        self.causal = True
        # Renormalising the teacher over kept tokens needs its dense logits.
        self.needs_dense_teacher = p.vocab != "full"
        if p.teacher_path:
            self._read_teacher(p.teacher_path)

    # -- binding -----------------------------------------------------------------------

    def _read_teacher(self, folder: str) -> None:
        p = self.params
        assert isinstance(p, HfLMParams)
        config = read_teacher_config(folder, _WHERE)
        family = family_of(config, _WHERE)
        facts = tokenizer_facts(folder, _WHERE)
        model_vocab = int(config["vocab_size"])
        if facts.size > model_vocab:
            raise ConfigError(
                f"{_WHERE}: the tokenizer of {folder} has {facts.size} tokens but the "
                f"teacher's vocabulary has {model_vocab} entries",
                hint="save the teacher with its own tokenizer",
            )
        if p.vocab_size is not None and p.vocab_size != model_vocab and p.vocab == "full":
            raise ConfigError(
                f"student.params.vocab_size: {p.vocab_size} is not the vocabulary of the "
                f"tokenizer the student shares with its teacher ({model_vocab} entries)",
                hint="remove student.params.vocab_size, or trim with student.params.vocab: corpus",
            )
        if p.init == "prune" and not family.prunable:
            prunable = [k for k, f in FAMILIES.items() if f.prunable]
            raise ConfigError(
                f"student.params.init: prune supports the {', '.join(prunable)} family, "
                f"not {config['model_type']!r}",
                hint="use init: layers (DistilBERT-style) or init: random for this teacher",
            )
        self._folder = str(Path(folder).expanduser().resolve())
        self._config, self._family, self._tokenizer = config, family, facts
        self.causal = family.mode == "causal"

    def bind_teacher(self, teacher: Teacher | None) -> None:
        """Read the teacher's folder: ``teacher_path`` or the ``huggingface`` teacher's.

        Raises:
            ConfigError: no Hugging Face folder, an unsupported family, a folder whose
                tokenizer cannot be shared, or ``init: prune`` for a family it lacks.
        """
        p = self.params
        assert isinstance(p, HfLMParams)
        if p.teacher_path:
            return  # read in __init__
        folder = getattr(teacher, "tokenizer_path", None)
        if not folder or not (Path(folder) / "config.json").is_file():
            raise ConfigError(
                f"{_WHERE}: the teacher is not a Hugging Face model folder, and "
                "student.params.teacher_path is not set",
                hint="use the `huggingface` teacher, or set student.params.teacher_path "
                "to the teacher's save_pretrained folder",
            )
        self._read_teacher(str(folder))

    def bind_data(self, splits: DataSplits) -> None:
        """Check the data's mode, keep the corpus vocabulary, score units for pruning.

        Raises:
            ConfigError: a masked-LM family on next-token data; a trimmed vocabulary
                with a tokenizer that cannot be trimmed.
        """
        p = self.params
        assert isinstance(p, HfLMParams)
        if self._config is None or self._tokenizer is None or self._family is None:
            return
        y = splits.train.y
        # Streamed (lazy) inputs are read batch by batch, never all at once.
        first = next(iter_batches(splits.train.x, 1024), (None, torch.zeros(0, 0)))[1]
        if self._family.mode == "masked" and _looks_causal(first, y[: len(first)]):
            raise ConfigError(
                f"{_WHERE}: teacher family {self._config['model_type']!r} is a masked LM "
                "whose positions see later ones, and the data's targets are the next tokens",
                hint="distil a causal teacher (e.g. GPT-2) for task mode causal",
            )
        if p.vocab != "full":
            kind = tokenizer_model_type(str(self._folder))
            if kind not in TRIMMABLE_MODELS:
                raise ConfigError(
                    f"student.params.vocab: {p.vocab}: the teacher's tokenizer is "
                    f"{kind or 'not a fast tokenizer'}, and only "
                    f"{' and '.join(TRIMMABLE_MODELS)} vocabularies can be trimmed",
                    hint="set student.params.vocab: full for this tokenizer",
                )
            self._kept = corpus_vocabulary(
                ((batch, y[idx]) for idx, batch in iter_batches(splits.train.x, 1024)),
                self._tokenizer,
                int(self._config["vocab_size"]),
                p.min_count,
            )
            if p.vocab_size is not None and p.vocab_size != len(self._kept):
                raise ConfigError(
                    f"student.params.vocab_size: {p.vocab_size} is not the size of the corpus "
                    f"vocabulary ({len(self._kept)} tokens at min_count {p.min_count})",
                    hint="remove student.params.vocab_size (the corpus decides it)",
                )
        if p.init == "prune":
            rows = first[: p.calibration_rows]
            teacher = _load_teacher(str(self._folder), self._family.mode)
            self._importance = gpt2_importance(teacher, rows, self._tokenizer.pad_token_id)

    # -- sampling ----------------------------------------------------------------------

    def _bound(self) -> tuple[dict[str, Any], Family, TokenizerFacts]:
        if self._config is None or self._family is None or self._tokenizer is None:
            raise ConfigError(
                f"{_WHERE}: no teacher was bound to the space",
                hint="run it through `kdforge search`, or set student.params.teacher_path",
            )
        return self._config, self._family, self._tokenizer

    def suggest(self, trial: Any, info: DataInfo) -> dict[str, Any] | None:
        """Sample depth and widths (as ``init`` allows) and the vocabulary choice."""
        p = self.params
        assert isinstance(p, HfLMParams)
        if self._config is None:
            # Unbound (e.g. `kdforge plugins show`): the names and kinds of the searched
            # values over a nominal GPT-2-small teacher; nothing that builds. The search
            # driver always binds the teacher first.
            self._suggest_depth(trial, _NOMINAL, {})
            self._suggest_widths(trial, _NOMINAL, 1, {})
            if p.vocab == "searched":
                trial.suggest_categorical("vocab", ["full", "corpus"])
            return {"init": p.init}
        config, family, facts = self._bound()
        teacher = teacher_sizes(config, family)
        extra: dict[str, Any] = {"init": p.init}
        layers, kept_layers = self._suggest_depth(trial, teacher, extra)
        sizes = self._suggest_widths(trial, teacher, layers, extra)
        vocab = p.vocab
        if vocab == "searched":
            vocab = trial.suggest_categorical("vocab", ["full", "corpus"])
        kept = self._kept if vocab == "corpus" else None
        if vocab == "corpus" and kept is None:
            raise ConfigError(
                f"student.params.vocab: {vocab}: the space has not seen the training data",
                hint="run it through `kdforge search`, which binds the data",
            )
        vocab_size = len(kept) if kept is not None else int(config["vocab_size"])
        if p.init != "random":
            extra["kept_layers"] = kept_layers
        if p.vocab != "searched":
            extra["vocab"] = vocab
        extra["vocab_size"] = vocab_size
        pad = info.pad_token_id if info.pad_token_id is not None else facts.pad_token_id
        # One JSON string, as `pruned` keeps its recipe: Ray and MLflow see a flat value.
        extra["_recipe"] = json.dumps(
            {
                "config": student_config(config, family, sizes, vocab_size),
                "mode": family.mode,
                "tokenizer_dir": self._folder,
                "pad_token_id": pad,
                "kept_token_ids": kept,
                "unk_index": kept.index(facts.unk_token_id)
                if kept is not None and facts.unk_token_id is not None
                else int(facts.unk_token_id or 0),
            },
            sort_keys=True,
        )
        return extra

    def _suggest_depth(
        self, trial: Any, teacher: StudentSizes, extra: dict[str, Any]
    ) -> tuple[int, list[int]]:
        """The number of layers and the teacher layer each one is started from."""
        p = self.params
        assert isinstance(p, HfLMParams)
        if p.init != "random" and p.layer_selection == "searched":
            kept_layers = [
                i
                for i in range(teacher.layers)
                if trial.suggest_categorical(f"keep_layer_{i}", [True, False])
            ] or [teacher.layers - 1]
            layers = len(kept_layers)
            extra["layers"] = layers
        else:
            top = p.max_layers or teacher.layers
            if p.init != "random":
                top = min(top, teacher.layers)
            if p.min_layers > top:
                raise ConfigError(
                    f"student.params.min_layers ({p.min_layers}) exceeds the most layers "
                    f"a student may have ({top})",
                    hint=f"set student.params.min_layers to at most {top}",
                )
            layers = trial.suggest_int("layers", p.min_layers, top)
            how = "every_other" if p.layer_selection == "searched" else p.layer_selection
            kept_layers = select_layers(layers, teacher.layers, how)
        return layers, kept_layers

    def _suggest_widths(
        self, trial: Any, teacher: StudentSizes, layers: int, extra: dict[str, Any]
    ) -> StudentSizes:
        p = self.params
        assert isinstance(p, HfLMParams)
        fractions = p.width_fractions
        intermediates = p.intermediate_sizes or _sizes_from(fractions, teacher.intermediate)
        heads_all = p.heads or _sizes_from(fractions, teacher.heads)
        if p.init == "layers":
            sizes = StudentSizes(layers, teacher.hidden, teacher.heads, teacher.intermediate)
        elif p.init == "prune":
            head_dim = teacher.hidden // teacher.heads
            head_choices = [h for h in heads_all if h <= teacher.heads]
            inner_choices = [i for i in intermediates if i <= teacher.intermediate]
            if not head_choices or not inner_choices:
                raise ConfigError(
                    f"student.params: init: prune keeps at most the teacher's {teacher.heads} "
                    f"heads and {teacher.intermediate} feed-forward units; none of "
                    f"heads {heads_all} / intermediate_sizes {intermediates} fits",
                    hint="give sizes up to the teacher's, or use width_fractions",
                )
            heads = trial.suggest_categorical("heads", head_choices)
            inner = trial.suggest_categorical("intermediate", inner_choices)
            # GPT-2's attention width is its hidden size: heads keep the teacher's size.
            sizes = StudentSizes(layers, heads * head_dim, heads, inner)
        else:
            hiddens = p.hidden_sizes or _sizes_from(fractions, teacher.hidden)
            hiddens = [h for h in hiddens if any(h % k == 0 for k in heads_all)]
            if not hiddens:
                raise ConfigError(
                    f"student.params: no head count in {heads_all} divides a hidden size",
                    hint="give student.params.hidden_sizes and heads that divide them",
                )
            hidden = trial.suggest_categorical("hidden", hiddens)
            if all(h % k == 0 for h in hiddens for k in heads_all):
                heads = trial.suggest_categorical("heads", heads_all)
            else:
                heads = trial.suggest_categorical(
                    f"heads_h{hidden}", [k for k in heads_all if hidden % k == 0]
                )
            inner = trial.suggest_categorical("intermediate", intermediates)
            sizes = StudentSizes(layers, hidden, heads, inner)
        extra.update(hidden=sizes.hidden, heads=sizes.heads, intermediate=sizes.intermediate)
        return sizes

    # -- building ----------------------------------------------------------------------

    def build(self, arch: dict[str, Any], info: DataInfo) -> nn.Module:
        """The student of ``arch``, started from the teacher when ``init`` says so.

        A space that was never bound to a teacher (rebuilding a checkpoint, whose
        weights are loaded next) builds the bare architecture from ``_recipe``, and so
        does ``init_from_teacher: false`` (the search's from-scratch baseline).

        Raises:
            ConfigError: an ``arch`` without ``_recipe`` (not made by this space).
        """
        p = self.params
        assert isinstance(p, HfLMParams)
        recipe = arch.get("_recipe")
        if isinstance(recipe, str):
            recipe = json.loads(recipe)
        if not isinstance(recipe, dict):
            raise ConfigError(
                f"{_WHERE}: architecture {sorted(arch)} has no _recipe entry",
                hint="rebuild students of checkpoints written by the hf_lm space",
            )
        model = build_model(dict(recipe["config"]))
        kept_list = recipe.get("kept_token_ids")
        kept = None if kept_list is None else torch.tensor(kept_list, dtype=torch.int64)
        init = str(arch.get("init", "random"))
        if arch.get("init_from_teacher") is False:
            init = "random"  # the from-scratch baseline: no teacher knowledge at all
        if init != "random" and self._folder is not None and self._config is not None:
            self._initialise(model, arch, init, kept)
        elif init != "random" and p.init != "random":
            raise ConfigError(
                f"student.params.init: {init}: no teacher was bound to the space",
                hint="run it through `kdforge search`, which binds the search's teacher",
            )
        return HuggingFaceLMStudent(
            model,
            recipe["mode"],
            tokenizer_dir=recipe.get("tokenizer_dir"),
            pad_token_id=recipe.get("pad_token_id"),
            kept_token_ids=kept,
            unk_index=int(recipe.get("unk_index", 0)),
        )

    def _initialise(
        self, model: nn.Module, arch: dict[str, Any], init: str, kept: torch.Tensor | None
    ) -> None:
        assert self._folder is not None and self._config is not None and self._family is not None
        teacher = teacher_sizes(self._config, self._family)
        state = _teacher_state(self._folder, _weights_mtime(self._folder), self._family.mode)
        prune = None
        if init == "prune":
            if self._importance is None:
                raise ConfigError(
                    "student.params.init: prune: the space has not scored the teacher "
                    "on training data",
                    hint="run it through `kdforge search`, which binds the data",
                )
            prune = prune_choice(
                self._importance, int(arch["hidden"]), int(arch["heads"]), int(arch["intermediate"])
            )
        init_from_teacher(
            model,
            state,
            [int(i) for i in arch["kept_layers"]],
            teacher_vocab=int(self._config["vocab_size"]),
            kept_token_ids=kept,
            prune=prune,
            teacher_hidden=teacher.hidden,
        )

    def describe(self, arch: dict[str, Any]) -> str:
        """``hf_lm 2L h64 4 heads ffn256 V1234 (prune init)``."""
        text = (
            f"hf_lm {int(arch['layers'])}L h{int(arch['hidden'])} {int(arch['heads'])} heads "
            f"ffn{int(arch['intermediate'])} V{int(arch['vocab_size'])}"
        )
        init = arch.get("init", "random")
        return text + ("" if init == "random" else f" ({init} init)")


def _looks_causal(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether every scored target is the next input token (task mode causal)."""
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] < 2:
        return False
    scored = y[:, :-1] >= 0
    return bool(scored.any()) and bool((y[:, :-1][scored] == x[:, 1:][scored]).all())


@kdforge.hookimpl
def register_search_spaces(register: kdforge.Register) -> None:
    """Register the ``hf_lm`` search space."""
    register("hf_lm", HfLMSpace)
