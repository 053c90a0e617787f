"""The encoder network of the ``transformer`` search space, and its teacher-layer copy.

Inputs are read by shape and dtype:

* token ids, ``int64`` of shape ``(seq_len,)``: an embedding of ``vocab_size`` rows;
* float sequences ``(seq_len, dim)``: a linear projection of each position;
* flat floats ``(F,)``: F positions of dimension 1;
* images ``(C, H, W)``: H positions (the rows) of dimension C*W, the classic
  "image as a sequence of rows" layout (8 positions for an 8x8 digit).

A learned position embedding is added; pre-norm encoder layers (multi-head
self-attention through ``scaled_dot_product_attention``, then a GELU feed-forward
block, each with a residual connection) follow; a final LayerNorm, mean pooling over
the positions (padding excluded for token ids when the pad id is known) or the first
position, dropout and a linear head give the logits. With ``per_position`` (token
tagging) there is no pooling: the head runs on every position, ``(n, L, classes)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EncoderLayer", "TransformerNet", "copy_teacher_layers", "teacher_layer_map"]

# A large finite negative score for padded keys: -inf would turn an all-padding row
# into NaN after the softmax.
_MASKED = -1e4


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer: self-attention then feed-forward."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout_p = dropout
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ff1 = nn.Linear(hidden, ffn)
        self.ff2 = nn.Linear(ffn, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode ``x`` ``(n, L, hidden)``; ``mask`` ``(n, 1, 1, L)`` is added to the scores."""
        n, length, hidden = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .reshape(n, length, 3, self.heads, hidden // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0
        )
        x = x + self.drop(self.out(attended.transpose(1, 2).reshape(n, length, hidden)))
        return x + self.drop(self.ff2(self.drop(F.gelu(self.ff1(self.norm2(x))))))


class TransformerNet(nn.Module):
    """Embedding, position embedding, encoder layers, pooling and a linear head."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        *,
        tokens: bool,
        vocab_size: int | None,
        pad_token_id: int | None,
        layers: int,
        hidden: int,
        heads: int,
        ffn: int,
        dropout: float,
        pooling: str,
        num_classes: int,
        per_position: bool = False,
    ) -> None:
        super().__init__()
        self.tokens = tokens
        self.pooling = pooling
        self.per_position = per_position
        self.pad_token_id = pad_token_id if tokens else None
        self.image = False
        if tokens:
            if len(input_shape) != 1:
                raise ValueError(f"token-id inputs must have shape (seq_len,), got {input_shape}")
            if not vocab_size:
                raise ValueError("token-id inputs need a vocab_size")
            length = input_shape[0]
            self.embed: nn.Module = nn.Embedding(vocab_size, hidden)
        else:
            if len(input_shape) == 1:
                length, dim = input_shape[0], 1
            elif len(input_shape) == 2:
                length, dim = input_shape
            elif len(input_shape) == 3:
                self.image = True
                length, dim = input_shape[1], input_shape[0] * input_shape[2]
            else:
                raise ValueError(f"transformer supports 1-3 input axes, got {input_shape}")
            self.embed = nn.Linear(dim, hidden)
        self.pos = nn.Parameter(torch.randn(1, length, hidden) * 0.02)
        self.layers = nn.ModuleList(
            EncoderLayer(hidden, heads, ffn, dropout) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)
        # Each layer's output (n, L, hidden), for feature-based losses (kdforge.features).
        self.feature_names = tuple(f"layers.{i}" for i in range(layers))

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            return self.embed(x.long())
        if self.image:
            return self.embed(x.permute(0, 2, 1, 3).flatten(2))  # (n, H, C*W)
        return self.embed(x.unsqueeze(-1) if x.dim() == 2 else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs ``(n, *input_shape)`` to logits ``(n, num_classes)`` (or, per
        position, ``(n, L, num_classes)``; padded positions get logits too, which the
        task's targets (``-2`` there) leave out of every loss and metric)."""
        h = self._embed(x) + self.pos
        keep = None
        mask = None
        if self.pad_token_id is not None:
            keep = (x != self.pad_token_id).to(h.dtype)
            mask = ((1.0 - keep) * _MASKED)[:, None, None, :]
        for layer in self.layers:
            h = layer(h, mask)
        h = self.norm(h)
        if self.per_position:
            return self.head(self.dropout(h))
        if self.pooling == "first":
            pooled = h[:, 0]
        elif keep is not None:
            weights = keep.unsqueeze(-1)
            pooled = (h * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        else:
            pooled = h.mean(1)
        return self.head(self.dropout(pooled))


def teacher_layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer copied into each student layer: ``floor(i * T / S)``.

    With half the teacher's layers this is every other layer (0, 2, 4, ...), the
    DistilBERT recipe; with as many layers it is the identity.
    """
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(
            f"a student of {student_layers} layers cannot copy a {teacher_layers}-layer teacher"
        )
    return [math.floor(i * teacher_layers / student_layers) for i in range(student_layers)]


def copy_teacher_layers(
    student: TransformerNet, teacher_state: dict[str, torch.Tensor], teacher_layers: int
) -> list[int]:
    """Load the teacher's embeddings, head and a subset of its layers into ``student``.

    Args:
        student: A freshly built student with the teacher's hidden, heads and FFN sizes.
        teacher_state: The teacher's ``state_dict``.
        teacher_layers: Number of layers of the teacher.

    Returns:
        The teacher layer index copied into each student layer.

    Raises:
        ValueError: a tensor's shape differs between teacher and student.
    """
    mapping = teacher_layer_map(teacher_layers, len(student.layers))
    target = student.state_dict()
    loaded = {}
    for key in target:
        source = key
        if key.startswith("layers."):
            _, index, rest = key.split(".", 2)
            source = f"layers.{mapping[int(index)]}.{rest}"
        if source not in teacher_state:
            raise ValueError(f"the teacher has no tensor {source!r}")
        value = teacher_state[source]
        if tuple(value.shape) != tuple(target[key].shape):
            raise ValueError(
                f"{source!r} has shape {tuple(value.shape)} in the teacher but "
                f"{tuple(target[key].shape)} in the student"
            )
        loaded[key] = value.detach().clone()
    student.load_state_dict(loaded)
    return mapping
