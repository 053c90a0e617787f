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

:meth:`HuggingFaceLMStudent.save_hf_folder` writes the student as a Hugging Face model
folder (config, safetensors, tokenizer) that a serving stack loads as is; with a trimmed
vocabulary the tokenizer is rewritten so that its ids are the student's entries
(:mod:`kdforge.search_spaces.hf_lm_tokenizer`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from kdforge.errors import ConfigError
from kdforge.search_spaces.hf_lm_tokenizer import save_trimmed_tokenizer

__all__ = ["KEPT_IDS_FILE", "HuggingFaceLMStudent"]

#: File of :meth:`HuggingFaceLMStudent.save_hf_folder` holding a trimmed vocabulary's
#: original ids (student entry ``i`` is original id ``kept_token_ids[i]``).
KEPT_IDS_FILE = "kept_token_ids.json"


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

    def save_hf_folder(self, folder: str | Path) -> Path:
        """Save the student as a self-consistent Hugging Face model folder.

        Writes ``config.json`` and ``model.safetensors`` (``save_pretrained``) and the
        tokenizer of :attr:`tokenizer_dir`. With a trimmed vocabulary the tokenizer's
        vocabulary is rewritten so that its ids *are* the student's entries (word-level
        and WordPiece tokenizers; the config's special-token ids are remapped too) and
        ``kept_token_ids.json`` records each entry's original id, so a serving stack
        loads the folder as is and text round-trips through student ids.

        Args:
            folder: Where to write (created; existing files of the same names replaced).

        Returns:
            ``folder`` as a :class:`~pathlib.Path`.

        Raises:
            ConfigError: the student has no tokenizer folder, or its vocabulary is
                trimmed and its tokenizer is BPE or unigram (their merges and pieces
                cannot be cut to a subset of tokens).
        """
        folder = Path(folder)
        if self.tokenizer_dir is None:
            raise ConfigError(
                "HuggingFaceLMStudent.save_hf_folder: the student has no tokenizer folder",
                hint="build it with tokenizer_dir= (the teacher's tokenizer folder)",
            )
        folder.mkdir(parents=True, exist_ok=True)
        kept = None if self.kept_token_ids is None else [int(i) for i in self.kept_token_ids]
        # Refuse an untrimmable tokenizer before anything is written.
        save_trimmed_tokenizer(self.tokenizer_dir, folder, kept)
        config = self.model.config
        keys = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id")
        originals = {k: getattr(config, k, None) for k in keys}
        if kept is not None:
            # The config's special ids name tokens: in a trimmed folder, student entries.
            position = {original: i for i, original in enumerate(kept)}
            for key, value in originals.items():
                if isinstance(value, int):
                    setattr(config, key, position.get(value, self.unk_index))
        try:
            self.model.save_pretrained(folder)
        finally:
            for key, value in originals.items():  # the live module keeps original ids
                if isinstance(value, int):
                    setattr(config, key, value)
        if kept is not None:
            (folder / KEPT_IDS_FILE).write_text(
                json.dumps({"kept_token_ids": kept, "unk_index": self.unk_index}) + "\n"
            )
        return folder
