"""Teacher ``huggingface``: a local Hugging Face transformer folder (never the hub).

``path`` is a folder written by ``save_pretrained`` (config, weights, tokenizer).
Loading sets ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``: nothing is
downloaded, and a hub id that is not a local folder is an error.

* ``task: sequence_classification`` (``AutoModelForSequenceClassification``): logits
  plus the pooled embedding as a feature;
* ``task: token_classification`` (``AutoModelForTokenClassification``): logits per
  token position ``(n, seq_len, labels)`` for token tagging (the ``text`` dataset's
  ``tags_column``); a folder whose ``config.json`` names a ``*ForTokenClassification``
  architecture is refused under ``sequence_classification`` (its head would be
  replaced by a random one);
* ``task: causal_lm`` (``AutoModelForCausalLM``, e.g. GPT-2) and ``task: masked_lm``
  (``AutoModelForMaskedLM``, e.g. BERT): logits over the vocabulary at every position,
  ``(n, seq_len, vocab)``, for the ``language_modeling`` task (the ``text_corpus``
  dataset's blocks);
* ``task: encoder`` (``AutoModel``): no logits; the pooled embedding (and hidden
  states) only, for embedding distillation.

A folder whose ``config.json`` names an architecture of another head (a language model
under ``sequence_classification``, a classifier under ``causal_lm``, a masked LM under
``causal_lm``, ...) is refused in one line: loading it would replace its head by a
random one.

Inputs are int64 token ids ``(n, seq_len)``; the attention mask is ``ids != pad id``
(a language model whose tokenizer and config name no pad token, like GPT-2's, attends
to every position: its packed blocks hold no padding).
Features: ``pooled`` (``pooling``: ``cls`` token, masked ``mean``, or the model's
``pooler`` output) and, with ``hidden_states: true``, ``hidden_<i>`` for every layer
(``hidden_0`` = embeddings, ``hidden_<L>`` = the last layer's output, L =
``num_hidden_layers``), each per position: ``(n, seq_len, hidden)``. ``hidden_layers``
keeps only some of them (``[-1]``: the last, what DistilBERT's cosine loss aligns).

Text datasets tokenize with the teacher's tokenizer: the teacher exposes its folder
as :attr:`HuggingFaceTeacher.tokenizer_path`, and the ``text`` dataset's
``tokenizer`` parameter takes the same folder. Needs the ``[hf]`` extra.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

import kdforge
from kdforge.errors import CheckpointError
from kdforge.interfaces import ModelOutput, PluginParams, Teacher
from kdforge.plugins.teachers._loading import directory_sha256

# transformers belongs to the optional [hf] extra: imported only when a model loads.

__all__ = ["HuggingFaceParams", "HuggingFaceTeacher", "check_head", "head_kind", "offline_hub"]

_WHERE = "teacher 'huggingface'"

_LM_TASKS = ("causal_lm", "masked_lm")

#: The ``task`` values whose folder must hold a model with a matching head, by the
#: architecture names of ``config.json``, and how the head is named in messages.
_HEADS: dict[str, tuple[tuple[str, ...], str]] = {
    "token_classification": (("ForTokenClassification",), "token classification model"),
    "sequence_classification": (("ForSequenceClassification",), "sequence classifier"),
    "causal_lm": (("ForCausalLM", "LMHeadModel"), "causal language model"),
    "masked_lm": (("ForMaskedLM",), "masked language model"),
}


class HuggingFaceParams(PluginParams):
    """Parameters of the ``huggingface`` teacher."""

    path: str = Field(description="Local folder written by save_pretrained (no hub ids).")
    task: Literal[
        "sequence_classification", "token_classification", "causal_lm", "masked_lm", "encoder"
    ] = Field(
        "sequence_classification",
        description="sequence_classification: logits + pooled; token_classification: "
        "logits per token (tagging); causal_lm / masked_lm: vocabulary logits per token "
        "(AutoModelForCausalLM / AutoModelForMaskedLM, language_modeling); encoder: "
        "embeddings only.",
    )
    pooling: Literal["cls", "mean", "pooler"] = Field(
        "cls", description="How the 'pooled' feature is made from the last hidden state."
    )
    hidden_states: bool = Field(
        False,
        description="Also expose every layer's hidden states as 'hidden_<i>' features, "
        "(n, seq_len, hidden) per position (hidden_0: embeddings; the highest i: last layer).",
    )
    hidden_layers: list[int] | None = Field(
        None,
        description="With hidden_states: only these layers (0 = embeddings, negative counts "
        "from the end: [-1] = the last layer's output); default: all.",
    )
    pad_token_id: int | None = Field(
        None, description="Padding id for the attention mask (default: the tokenizer's/config's)."
    )


@contextmanager
def offline_hub() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` (and ``TRANSFORMERS_OFFLINE=1``) while loading."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({k: "1" for k in saved})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class HuggingFaceTeacher(Teacher):
    """A local Hugging Face transformer: classifier, tagger, causal/masked LM or encoder."""

    name = "huggingface"
    Params = HuggingFaceParams

    @property
    def tokenizer_path(self) -> str:
        """The folder holding the teacher's tokenizer (give it to the text dataset)."""
        params = self.params
        assert isinstance(params, HuggingFaceParams)
        return str(Path(params.path).expanduser().resolve())

    def load(self) -> None:
        """Load config and weights from the local folder, offline."""
        params = self.params
        assert isinstance(params, HuggingFaceParams)
        folder = Path(self.tokenizer_path)
        if not (folder / "config.json").is_file():
            raise CheckpointError(
                f"{_WHERE}: {params.path} is not a local model folder (no config.json); "
                "kdforge never downloads from the hub",
                hint="save the model locally with model.save_pretrained(folder) and "
                "tokenizer.save_pretrained(folder), and set teacher.params.path to it",
            )
        architectures = json.loads((folder / "config.json").read_text()).get("architectures")
        check_head(params.task, [str(a) for a in architectures or []], params.path)
        with offline_hub():
            try:
                import transformers
            except ImportError:
                raise CheckpointError(
                    f"{_WHERE}: needs the `transformers` package", hint="pip install 'kdforge[hf]'"
                ) from None
            loader = {
                "sequence_classification": transformers.AutoModelForSequenceClassification,
                "token_classification": transformers.AutoModelForTokenClassification,
                "causal_lm": transformers.AutoModelForCausalLM,
                "masked_lm": transformers.AutoModelForMaskedLM,
                "encoder": transformers.AutoModel,
            }[params.task]
            try:
                model = loader.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError, KeyError) as exc:
                raise CheckpointError(
                    f"{_WHERE}: cannot load a {params.task} model from {folder}: "
                    f"{str(exc).strip().splitlines()[0]}"
                ) from None
        model.eval()
        self._model = model
        self._pad_id = self._find_pad_id(folder, model)
        recipe = json.dumps(params.model_dump(exclude={"path"}), sort_keys=True)
        self._sha = hashlib.sha256(f"{directory_sha256(folder)}:{recipe}".encode()).hexdigest()

    def _find_pad_id(self, folder: Path, model: Any) -> int | None:
        params = self.params
        assert isinstance(params, HuggingFaceParams)
        if params.pad_token_id is not None:
            return params.pad_token_id
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            file = folder / name
            if file.is_file():
                data = json.loads(file.read_text())
                if isinstance(data.get("pad_token_id"), int):
                    return int(data["pad_token_id"])
        if params.task in _LM_TASKS:
            # A language model reads packed blocks, often with a tokenizer that has no
            # pad token (GPT-2): guessing id 0 would hide a real token from attention.
            pad = _tokenizer_pad_id(folder)
            if pad is None and getattr(model.config, "pad_token_id", None) is not None:
                pad = int(model.config.pad_token_id)
            return pad
        if getattr(model.config, "pad_token_id", None) is not None:
            return int(model.config.pad_token_id)
        return 0

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> ModelOutput:
        """Logits (``(n, labels)``; per token ``(n, seq_len, labels)``; for a language
        model ``(n, seq_len, vocab)``) and features for one batch of token ids."""
        params = self.params
        assert isinstance(params, HuggingFaceParams)
        ids = x.long()
        # GPT-2 and BERT have a fixed position table: a longer block would index past
        # it (an IndexError deep inside the model) or, for some models, silently wrap.
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and ids.shape[-1] > limit:
            raise CheckpointError(
                f"{_WHERE}: inputs of {ids.shape[-1]} tokens, but {params.path} reads at "
                f"most {limit} positions (max_position_embeddings)",
                hint=f"set the dataset's block_size (or max_length) to at most {limit}",
            )
        mask = torch.ones_like(ids) if self._pad_id is None else (ids != self._pad_id).long()
        out = self._model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        hidden = out.hidden_states
        last = hidden[-1]
        if params.pooling == "cls":
            pooled = last[:, 0]
        elif params.pooling == "mean":
            weights = mask.unsqueeze(-1).to(last.dtype)
            pooled = (last * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        else:
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                raise CheckpointError(
                    f"{_WHERE}: the model has no pooler output", hint="use pooling: cls or mean"
                )
        features = {"pooled": pooled}
        if params.hidden_states:
            features.update({f"hidden_{i}": hidden[i] for i in self._hidden_indices(len(hidden))})
        logits = getattr(out, "logits", None) if params.task != "encoder" else None
        return ModelOutput(logits, features)

    def _hidden_indices(self, count: int) -> list[int]:
        """Which of the ``count`` hidden states to expose (``hidden_layers``, or all)."""
        params = self.params
        assert isinstance(params, HuggingFaceParams)
        if params.hidden_layers is None:
            return list(range(count))
        chosen = []
        for layer in params.hidden_layers:
            index = layer + count if layer < 0 else layer
            if not 0 <= index < count:
                raise CheckpointError(
                    f"{_WHERE}: hidden_layers names layer {layer}, but the model has "
                    f"{count} hidden states (0 = embeddings .. {count - 1} = last layer)",
                    hint=f"use layers in [{-count}, {count - 1}]; -1 is the last layer",
                )
            chosen.append(index)
        return sorted(set(chosen))

    def fingerprint(self) -> str:
        """SHA-256 of every file in the folder and of the params."""
        return self._sha

    def num_parameters(self) -> int:
        """Number of parameters of the transformer."""
        return sum(p.numel() for p in self._model.parameters())

    def expected_input_dtype(self) -> str | None:
        """Token ids: ``"int64"`` (a float view, e.g. bag of words, cannot be read)."""
        return "int64"

    def expected_num_classes(self) -> int | None:
        """``num_labels`` of a classification or tagging model, the output vocabulary
        of a language model (None for an encoder)."""
        params = self.params
        assert isinstance(params, HuggingFaceParams)
        if params.task == "encoder":
            return None
        if params.task in _LM_TASKS:
            # The head's rows, which may exceed len(tokenizer) (a padded table).
            head = self._model.get_output_embeddings()
            if head is not None:
                return int(head.weight.shape[0])
            return int(self._model.config.vocab_size)
        return int(self._model.config.num_labels)

    @property
    def vocab_size(self) -> int:
        """Size of the model's token embedding table."""
        return int(self._model.config.vocab_size)


def _tokenizer_pad_id(folder: Path) -> int | None:
    """The pad id of the folder's tokenizer (None: no pad token, or no tokenizer)."""
    # transformers belongs to the [hf] extra; load() has already imported it.
    from transformers import AutoTokenizer

    try:
        with offline_hub():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError):
        return None
    pad = getattr(tokenizer, "pad_token_id", None)
    return None if pad is None else int(pad)


def head_kind(architectures: list[str]) -> str | None:
    """The ``task`` whose head the ``config.json`` architectures name (None: unknown)."""
    for task, (suffixes, _) in _HEADS.items():
        if any(a.endswith(suffixes) for a in architectures):
            return task
    return None


def check_head(task: str, architectures: list[str], path: str, where: str = _WHERE) -> None:
    """Refuse a folder whose model has another head than ``task`` loads.

    ``encoder`` reads any model's body; an unknown architecture is let through.

    Raises:
        CheckpointError: e.g. a causal LM under ``sequence_classification``, whose
            head would be replaced by a random classifier.
    """
    found = head_kind(architectures)
    if task == "encoder" or found is None or found == task:
        return
    raise CheckpointError(
        f"{where}: {path} holds a {_HEADS[found][1]} ({', '.join(architectures)}), "
        f"not a {_HEADS[task][1]}",
        hint=f"set teacher.params.task: {found}",
    )


@kdforge.hookimpl
def register_teachers(register: kdforge.Register) -> None:
    """Register the ``huggingface`` teacher."""
    register("huggingface", HuggingFaceTeacher)
