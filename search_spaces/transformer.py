"""Search space ``transformer``: encoder students, optionally started from teacher layers.

Define-by-run: ``layers``, ``hidden``, then the head count among the configured ones
that divide the sampled hidden size, ``ffn`` (log-uniform) and ``dropout``. When every
head count divides every hidden size the head count is one parameter, ``heads``;
otherwise it is conditional on the hidden size, ``heads_h<hidden>`` (Optuna needs
fixed choices per parameter name), and ``heads`` is added to the architecture.
Token-id inputs (``int64``, shape ``(seq_len,)``) are embedded; float sequences
``(seq_len, dim)`` are projected (see :mod:`kdforge.search_spaces.transformer_net`
for every input layout).

Token tagging (``DataInfo.per_position``, task ``token_classification``): the head
runs on every position instead of a pooled vector, ``(n, seq_len, classes)``; the
padding mask is the same as for classification.

With ``init_from_teacher: true`` the student starts from a subset of a *compatible*
teacher's layers, as DistilBERT does. Compatible means: a kdforge checkpoint built by
this same ``transformer`` space (``kdforge train-teacher`` with ``architecture:
{name: transformer}``). The student then takes the teacher's hidden size, heads, FFN
size, pooling and vocabulary (only ``layers`` and ``dropout`` are sampled, layers up
to the teacher's), and copies its embeddings, final norm, head and layer
``floor(i * T / S)`` into student layer i: every other layer when the student has
half the layers. A Hugging Face teacher is not compatible yet (future work with the
Hugging Face teacher plugin).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

import kdforge
from kdforge.checkpoint import load_checkpoint
from kdforge.data import DataInfo, is_token_dtype
from kdforge.errors import ConfigError
from kdforge.interfaces import PluginParams, SearchSpace, Teacher
from kdforge.search_spaces.transformer_net import TransformerNet, copy_teacher_layers

__all__ = ["TransformerParams", "TransformerSpace"]

_HF_HINT = (
    "train the teacher with `kdforge train-teacher` and `architecture: {name: transformer}`, "
    "or set student.params.init_from_teacher: false (Hugging Face teachers are not "
    "supported for layer initialisation yet)"
)


class TransformerParams(PluginParams):
    """Ranges of the ``transformer`` search space."""

    min_layers: int = Field(1, ge=1, description="Fewest encoder layers.")
    max_layers: int = Field(4, ge=1, description="Most encoder layers.")
    hidden_sizes: list[int] = Field(
        default_factory=lambda: [32, 64, 128],
        min_length=1,
        description="Hidden sizes to choose from.",
    )
    heads: list[int] = Field(
        default_factory=lambda: [1, 2, 4],
        min_length=1,
        description="Head counts; only those dividing the sampled hidden size are offered.",
    )
    min_ffn: int = Field(32, ge=1, description="Smallest feed-forward size (log-uniform).")
    max_ffn: int = Field(256, ge=1, description="Largest feed-forward size (log-uniform).")
    max_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout is sampled in [0, this].")
    pooling: Literal["mean", "first"] = Field(
        "mean", description="'mean' over positions (padding excluded) or the 'first' position."
    )
    vocab_size: int | None = Field(
        None, ge=1, description="Vocabulary size for token ids (default: the dataset's)."
    )
    init_from_teacher: bool = Field(
        False, description="Start from a subset of a compatible transformer teacher's layers."
    )
    teacher_path: str | None = Field(
        None, description="Teacher checkpoint to copy layers from (default: the search's teacher)."
    )

    @model_validator(mode="after")
    def _check(self) -> TransformerParams:
        if self.min_layers > self.max_layers:
            raise ValueError(f"min_layers ({self.min_layers}) > max_layers ({self.max_layers})")
        if self.min_ffn > self.max_ffn:
            raise ValueError(f"min_ffn ({self.min_ffn}) > max_ffn ({self.max_ffn})")
        if any(v < 1 for v in [*self.hidden_sizes, *self.heads]):
            raise ValueError("hidden_sizes and heads must be positive")
        lonely = [h for h in self.hidden_sizes if not any(h % k == 0 for k in self.heads)]
        if lonely:
            raise ValueError(f"no head count in {self.heads} divides hidden size(s) {lonely}")
        return self


@lru_cache(maxsize=2)
def _teacher_state(path: str, mtime: float) -> dict[str, Any]:
    """The teacher checkpoint's state dict (cached per process: trials reuse workers)."""
    return dict(load_checkpoint(path)["state_dict"])


class TransformerSpace(SearchSpace):
    """Transformer encoders: layers, hidden size, heads, FFN size (teacher-layer init optional)."""

    name = "transformer"
    Params = TransformerParams
    #: Measured in benchmarks/lr_ranges.py (docs/search_spaces.md, "Learning rates").
    default_lr = (3e-4, 1e-2)
    per_position = True

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        self._teacher_path: str | None = None
        self._teacher_arch: dict[str, Any] | None = None

    def bind_teacher(self, teacher: Teacher | None) -> None:
        """Check the teacher is compatible and remember it (``init_from_teacher`` only).

        Called by the search driver once the teacher is loaded. The checkpoint is
        ``teacher_path`` or else the search teacher's own ``path`` parameter.

        Raises:
            ConfigError: no teacher checkpoint, or one not built by this space, or one
                with fewer layers than ``min_layers``.
        """
        p = self.params
        assert isinstance(p, TransformerParams)
        if not p.init_from_teacher:
            return
        path = p.teacher_path or getattr(getattr(teacher, "params", None), "path", None)
        if not path:
            raise ConfigError(
                "student.params.init_from_teacher: the teacher is not a kdforge checkpoint "
                "and student.params.teacher_path is not set",
                hint=_HF_HINT,
            )
        payload = load_checkpoint(path)
        if payload["space"] != self.name:
            raise ConfigError(
                f"student.params.init_from_teacher: teacher {path} was built by search space "
                f"{payload['space']!r}, not {self.name!r}, so it has no layers to copy",
                hint=_HF_HINT,
            )
        arch = dict(payload["arch"])
        teacher_layers = int(arch["layers"])
        if p.min_layers > teacher_layers:
            raise ConfigError(
                f"student.params.min_layers ({p.min_layers}) exceeds the teacher's "
                f"{teacher_layers} layers",
                hint=f"set student.params.min_layers to at most {teacher_layers}",
            )
        info = payload["info"]
        self._teacher_path = str(Path(path).resolve())
        self._teacher_arch = {
            "hidden": int(arch["hidden"]),
            "heads": int(arch["heads"]),
            "ffn": int(arch["ffn"]),
            "pooling": str(arch.get("pooling", "mean")),
            "teacher_layers": teacher_layers,
        }
        vocab = arch.get("vocab_size") or info.get("vocab_size")
        if vocab:
            self._teacher_arch["vocab_size"] = int(vocab)

    def suggest(self, trial: Any, info: DataInfo) -> dict[str, Any] | None:
        """Sample ``layers``, ``hidden``, the heads (dividing hidden), ``ffn``, ``dropout``."""
        p = self.params
        assert isinstance(p, TransformerParams)
        if is_token_dtype(info.input_dtype) and not (p.vocab_size or info.vocab_size):
            raise ConfigError(
                f"student.params.vocab_size: dataset {info.name!r} gives token ids but "
                "declares no vocabulary size",
                hint="set student.params.vocab_size to the tokenizer's vocabulary size",
            )
        if p.init_from_teacher:
            if self._teacher_arch is None:
                raise ConfigError(
                    "student.params.init_from_teacher: no teacher was bound to the space",
                    hint="run it through `kdforge search`, which binds the search's teacher",
                )
            top = min(p.max_layers, int(self._teacher_arch["teacher_layers"]))
            trial.suggest_int("layers", p.min_layers, top)
            if p.max_dropout > 0:
                trial.suggest_float("dropout", 0.0, p.max_dropout)
            return {**self._teacher_arch, "init_from_teacher": True}
        trial.suggest_int("layers", p.min_layers, p.max_layers)
        hidden = trial.suggest_categorical("hidden", list(p.hidden_sizes))
        choices = [h for h in p.heads if hidden % h == 0]
        extra: dict[str, Any] = {"pooling": p.pooling}
        if all(h % k == 0 for h in p.hidden_sizes for k in p.heads):
            trial.suggest_categorical("heads", list(p.heads))
        else:
            extra["heads"] = trial.suggest_categorical(f"heads_h{hidden}", choices)
        trial.suggest_int("ffn", p.min_ffn, p.max_ffn, log=True)
        if p.max_dropout > 0:
            trial.suggest_float("dropout", 0.0, p.max_dropout)
        if p.vocab_size:
            extra["vocab_size"] = p.vocab_size
        return extra

    def build(self, arch: dict[str, Any], info: DataInfo) -> nn.Module:
        """Build the encoder for ``arch``; copy teacher layers when it asks for it.

        A space created without a teacher (e.g. to rebuild a saved student, whose
        weights are loaded next) skips the copy; one configured with
        ``init_from_teacher`` but never bound raises :class:`ConfigError`.
        """
        p = self.params
        assert isinstance(p, TransformerParams)
        model = TransformerNet(
            tuple(info.input_shape),
            tokens=is_token_dtype(info.input_dtype),
            vocab_size=int(arch.get("vocab_size") or p.vocab_size or info.vocab_size or 0),
            pad_token_id=info.pad_token_id,
            layers=int(arch["layers"]),
            hidden=int(arch["hidden"]),
            heads=int(arch["heads"]),
            ffn=int(arch["ffn"]),
            dropout=float(arch.get("dropout", 0.0)),
            pooling=str(arch.get("pooling", "mean")),
            num_classes=info.num_classes,
            per_position=info.per_position,
        )
        if arch.get("init_from_teacher"):
            if self._teacher_path is not None:
                state = _teacher_state(self._teacher_path, Path(self._teacher_path).stat().st_mtime)
                copy_teacher_layers(model, state, int(arch["teacher_layers"]))
            elif p.init_from_teacher:
                raise ConfigError(
                    "student.params.init_from_teacher: no teacher was bound to the space",
                    hint="run it through `kdforge search`, which binds the search's teacher",
                )
        return model

    def describe(self, arch: dict[str, Any]) -> str:
        """``transformer 2L h64 4 heads ffn128``: layers, hidden size, heads, FFN width."""
        text = (
            f"transformer {int(arch['layers'])}L h{int(arch['hidden'])} "
            f"{int(arch['heads'])} heads ffn{int(arch['ffn'])}"
        )
        return text + (" (teacher init)" if arch.get("init_from_teacher") else "")

    def feature_names(self, arch: dict[str, Any], info: DataInfo) -> list[str]:
        """``layers.0`` .. ``layers.{n-1}``: each encoder layer's output ``(n, L, hidden)``."""
        return [f"layers.{i}" for i in range(int(arch["layers"]))]


@kdforge.hookimpl
def register_search_spaces(register: kdforge.Register) -> None:
    """Register the ``transformer`` search space."""
    register("transformer", TransformerSpace)
