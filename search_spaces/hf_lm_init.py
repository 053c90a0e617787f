"""Starting an ``hf_lm`` student from its teacher's weights.

Two ways, both for a student of the teacher's own family:

* **layers** (DistilBERT): the student has the teacher's widths and fewer layers;
  embeddings, final norm and LM head are copied, and student layer ``i`` is teacher
  layer ``kept_layers[i]`` (:func:`select_layers`: every other one, the first or the
  last ones, or a searched subset).
* **prune** (Minitron, activation-based, GPT-2 family): importance scores are measured
  on a calibration batch of the training data (:func:`gpt2_importance`), the most
  important embedding channels, attention heads (per layer) and MLP neurons (per layer)
  are kept, and the teacher's weights are sliced to them (:func:`init_from_teacher`);
  depth is then cut by the same layer selection. Keeping everything is the identity.

A trimmed vocabulary (``kept_token_ids``) keeps the rows of the embedding and LM head
of the kept tokens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from kdforge.errors import ConfigError

__all__ = [
    "Importance",
    "PruneChoice",
    "gpt2_importance",
    "init_from_teacher",
    "prune_choice",
    "select_layers",
]

LayerSelection = Literal["every_other", "first", "last"]

# ".h.3." (GPT-2), ".layer.3." (BERT, RoBERTa), ".layers.3." (Llama-like): a layer index.
_LAYER = re.compile(r"^(.*\.(?:h|layer|layers))\.(\d+)\.(.*)$")


def select_layers(student: int, teacher: int, how: LayerSelection) -> list[int]:
    """Which teacher layers a student of ``student`` layers takes, in order.

    ``every_other``: layer ``floor(i * teacher / student)``, DistilBERT's every other
    layer when the student has half of them; ``first``/``last``: the bottom or top ones.
    """
    if how == "first":
        return list(range(student))
    if how == "last":
        return list(range(teacher - student, teacher))
    return [i * teacher // student for i in range(student)]


@dataclass(frozen=True)
class Importance:
    """Activation-based importance of a GPT-2 teacher's prunable units (Minitron).

    Attributes:
        channels: ``(hidden,)`` embedding channels: LayerNorm outputs.
        heads: ``(layers, heads)`` attention heads: norm of each head's output.
        neurons: ``(layers, intermediate)`` MLP neurons: first MLP projection's output.
    """

    channels: torch.Tensor
    heads: torch.Tensor
    neurons: torch.Tensor


def _aggregate(value: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(n, T, k)`` activations -> ``(k,)``: mean over real positions, L2 over rows.

    Minitron's best aggregation (mean over the sequence, L2 norm over the batch).
    """
    weights = mask.to(value.dtype).unsqueeze(-1)
    per_row = (value * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    return per_row.norm(dim=0)


@torch.no_grad()
def gpt2_importance(model: Any, ids: torch.Tensor, pad_token_id: int | None) -> Importance:
    """Importance scores of a GPT-2 ``*LMHeadModel`` on calibration token ids ``(n, T)``.

    * embedding channel ``c``: ``|LayerNorm(x)_c|`` summed over every LayerNorm;
    * head ``h`` of layer ``l``: the L2 norm of the head's attention output (the input
      of ``attn.c_proj``, split per head);
    * neuron ``j`` of layer ``l``: ``|x W_1^T|_j`` (the output of ``mlp.c_fc``);

    each aggregated by the mean over the real positions and the L2 norm over the rows.
    """
    config = model.config
    head_dim = config.n_embd // config.n_head
    mask = torch.ones_like(ids, dtype=torch.bool) if pad_token_id is None else ids != pad_token_id
    channels = torch.zeros(config.n_embd)
    heads = torch.zeros(config.n_layer, config.n_head)
    inner = config.n_inner or 4 * config.n_embd
    neurons = torch.zeros(config.n_layer, inner)
    hooks = []

    def on_norm(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        channels.add_(_aggregate(out.abs().float(), mask))

    def on_heads(layer: int) -> Any:
        def hook(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].float()
            per_head = x.reshape(*x.shape[:-1], config.n_head, head_dim).norm(dim=-1)
            heads[layer].add_(_aggregate(per_head, mask))

        return hook

    def on_neurons(layer: int) -> Any:
        def hook(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
            neurons[layer].add_(_aggregate(out.abs().float(), mask))

        return hook

    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            hooks.append(module.register_forward_hook(on_norm))
    for i, block in enumerate(model.transformer.h):
        hooks.append(block.attn.c_proj.register_forward_pre_hook(on_heads(i)))
        hooks.append(block.mlp.c_fc.register_forward_hook(on_neurons(i)))
    was_training = model.training
    model.eval()
    try:
        model(input_ids=ids, attention_mask=mask.long())
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return Importance(channels, heads, neurons)


@dataclass(frozen=True)
class PruneChoice:
    """What a pruned student keeps of each teacher unit (sorted indices).

    Attributes:
        channels: Kept embedding channels ``(hidden',)``.
        heads: Kept heads per teacher layer ``(layers, heads')``.
        neurons: Kept MLP neurons per teacher layer ``(layers, intermediate')``.
        head_dim: The teacher's (and student's) size of one head.
    """

    channels: torch.Tensor
    heads: torch.Tensor
    neurons: torch.Tensor
    head_dim: int


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores along the last axis, in ascending order."""
    return scores.topk(k, dim=-1).indices.sort(dim=-1).values


def prune_choice(importance: Importance, hidden: int, heads: int, intermediate: int) -> PruneChoice:
    """The most important ``hidden`` channels, ``heads`` heads and ``intermediate`` neurons."""
    teacher_hidden = len(importance.channels)
    return PruneChoice(
        channels=_top(importance.channels, hidden),
        heads=_top(importance.heads, heads),
        neurons=_top(importance.neurons, intermediate),
        head_dim=teacher_hidden // importance.heads.shape[1],
    )


def _gpt2_slice(
    name: str, value: torch.Tensor, layer: int | None, prune: PruneChoice, teacher_hidden: int
) -> torch.Tensor:
    """One GPT-2 tensor cut to the kept channels, heads and neurons (Conv1D is in x out)."""
    e = prune.channels
    if layer is None:
        if name.endswith(("wte.weight", "wpe.weight", "lm_head.weight")):
            return value[:, e]
        if name.startswith("transformer.ln_f."):
            return value[e]
        return value
    cols = (
        prune.heads[layer].unsqueeze(1) * prune.head_dim + torch.arange(prune.head_dim)
    ).reshape(-1)
    qkv = torch.cat([cols, cols + teacher_hidden, cols + 2 * teacher_hidden])
    n = prune.neurons[layer]
    cuts: dict[str, Any] = {
        "ln_1.weight": lambda v: v[e],
        "ln_1.bias": lambda v: v[e],
        "ln_2.weight": lambda v: v[e],
        "ln_2.bias": lambda v: v[e],
        "attn.c_attn.weight": lambda v: v[e][:, qkv],
        "attn.c_attn.bias": lambda v: v[qkv],
        "attn.c_proj.weight": lambda v: v[cols][:, e],
        "attn.c_proj.bias": lambda v: v[e],
        "mlp.c_fc.weight": lambda v: v[e][:, n],
        "mlp.c_fc.bias": lambda v: v[n],
        "mlp.c_proj.weight": lambda v: v[n][:, e],
        "mlp.c_proj.bias": lambda v: v[e],
    }
    cut = cuts.get(name)
    return value if cut is None else cut(value)


def init_from_teacher(
    student: nn.Module,
    teacher_state: Mapping[str, torch.Tensor],
    kept_layers: Sequence[int],
    *,
    teacher_vocab: int,
    kept_token_ids: torch.Tensor | None = None,
    prune: PruneChoice | None = None,
    teacher_hidden: int | None = None,
) -> None:
    """Load ``student`` (a transformers LM) with its teacher's weights, in place.

    Args:
        student: The student's ``*ForCausalLM`` / ``*ForMaskedLM`` (teacher's family).
        teacher_state: The teacher model's state dict.
        kept_layers: Teacher layer of each student layer.
        teacher_vocab: The teacher's vocabulary size (rows of embedding and LM head).
        kept_token_ids: Trimmed vocabulary: the original ids the student keeps.
        prune: Width pruning (GPT-2): the kept channels, heads and neurons.
        teacher_hidden: The teacher's hidden size (with ``prune``).

    Raises:
        ConfigError: a student tensor whose teacher counterpart is missing or does not
            fit (e.g. ``init: layers`` with widths different from the teacher's).
    """
    state: dict[str, torch.Tensor] = {}
    for name, target in student.state_dict().items():
        match = _LAYER.match(name)
        layer = None
        source = name
        if match is not None:
            layer = kept_layers[int(match.group(2))]
            source = f"{match.group(1)}.{layer}.{match.group(3)}"
        if source not in teacher_state:
            raise ConfigError(
                f"student.params.init: the teacher has no tensor {source!r} for student {name!r}",
                hint="initialise students of the teacher's own family only",
            )
        value = teacher_state[source]
        if kept_token_ids is not None and value.ndim >= 1 and value.shape[0] == teacher_vocab:
            value = value[kept_token_ids]  # embedding / LM head rows of the kept tokens
        if prune is not None:
            assert teacher_hidden is not None
            local = match.group(3) if match is not None else name
            value = _gpt2_slice(local, value, layer, prune, teacher_hidden)
        if tuple(value.shape) != tuple(target.shape):
            raise ConfigError(
                f"student.params.init: teacher tensor {source!r} is {tuple(value.shape)}, "
                f"student {name!r} is {tuple(target.shape)}",
                hint="init: layers copies layers of the teacher's widths; use init: prune "
                "to start narrower students from the teacher",
            )
        state[name] = value.to(target.dtype)
    student.load_state_dict(state)
