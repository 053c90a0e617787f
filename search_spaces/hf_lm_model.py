"""The student module of language-model search spaces: a Hugging Face LM behind ids -> logits.

:class:`HuggingFaceLMStudent` wraps a ``transformers`` ``*ForCausalLM`` or
``*ForMaskedLM`` model so that the trainer, the exporters and the registry see what
they see for every other student: ``forward(ids) -> logits`` with ids ``(n, T)`` int64
and logits ``(n, T, V)``. It also carries what a language model needs beyond its
weights:

* ``mode``: ``causal`` or ``masked``;
* ``tokenizer_dir``: the folder of the tokenizer it shares with its teacher;
* ``kept_token_ids``: with a trimmed vocabulary, the original id of each student
  vocabulary entry (student id ``i`` is original id ``kept_token_ids[i]``); the module
  takes *original* ids and maps them itself, so that callers never remap inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["HuggingFaceLMStudent"]


class HuggingFaceLMStudent(nn.Module):
    """A Hugging Face language model seen as ``ids (n, T) -> logits (n, T, V)``.

    Args:
        model: A ``transformers`` ``PreTrainedModel`` with an LM head (``*ForCausalLM``
            or ``*ForMaskedLM``).
        mode: ``causal`` (next-token) or ``masked`` (masked-token) language modelling.
        tokenizer_dir: Folder of the tokenizer the ids come from (the teacher's).
        pad_token_id: Padding id; padded positions are masked out of attention.
        kept_token_ids: Trimmed vocabulary: the original id of each student entry
            (``(V_student,)`` int64, sorted). Original ids outside it read as
            ``unk_index`` (the student entry of the tokenizer's unknown token).
        unk_index: Student entry that unkept original ids map to.
    """

    def __init__(
        self,
        model: Any,
        mode: Literal["causal", "masked"],
        *,
        tokenizer_dir: str | Path | None = None,
        pad_token_id: int | None = None,
        kept_token_ids: torch.Tensor | None = None,
        unk_index: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.mode = mode
        self.tokenizer_dir = None if tokenizer_dir is None else str(tokenizer_dir)
        self.pad_token_id = pad_token_id
        self.unk_index = unk_index
        self.kept_token_ids: torch.Tensor | None
        self.id_map: torch.Tensor | None
        if kept_token_ids is None:
            self.register_buffer("kept_token_ids", None)
            self.register_buffer("id_map", None)
        else:
            kept = kept_token_ids.to(torch.int64)
            lookup = torch.full((int(kept.max()) + 1,), unk_index, dtype=torch.int64)
            lookup[kept] = torch.arange(len(kept))
            self.register_buffer("kept_token_ids", kept)
            self.register_buffer("id_map", lookup)

    def student_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Original token ids -> this model's vocabulary entries (identity when untrimmed)."""
        if self.id_map is None:
            return ids
        inside = ids < len(self.id_map)
        mapped = self.id_map[ids.clamp(0, len(self.id_map) - 1)]
        return torch.where(inside, mapped, torch.full_like(ids, self.unk_index))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, T, V_student)`` of original token ids ``(n, T)``."""
        mask = None if self.pad_token_id is None else (ids != self.pad_token_id).long()
        out = self.model(input_ids=self.student_ids(ids), attention_mask=mask)
        return out.logits
