"""Data-parallel training of one model by several processes (``torch.distributed``).

The trainer (:func:`kdforge.training.trainer.train_model`) calls these when it is given
a :class:`DataParallel`: every worker draws the same seeded permutation of the rows,
cuts it into the same global batches as one process would, and trains on its own slice
of each (:func:`shard_order`, like ``DistributedSampler`` but per batch, so the number
of optimizer steps, the learning-rate schedule and the global batch size are those of
the single-process run). Gradients are all-reduced, weighted by the rows each worker
really had, so a step's gradient is the one of the whole global batch. The process
group itself (gloo or NCCL) is set up by the caller (:mod:`kdforge.search.distributed_trial`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DataParallel",
    "all_sum",
    "any_worker",
    "broadcast_",
    "gather_rows",
    "model_state",
    "shard_order",
    "sync_gradients",
    "wrap_model",
]


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run.

    Attributes:
        rank: This worker (0 reports and keeps the weights).
        world_size: Workers in the run.
        mode: ``"ddp"`` (each worker holds the whole model) or ``"fsdp"`` (parameters,
            gradients and optimizer state sharded over the workers).
    """

    rank: int
    world_size: int
    mode: Literal["ddp", "fsdp"] = "ddp"

    @property
    def collective_forward(self) -> bool:
        """True when every forward pass is a collective (all workers must run it)."""
        return self.mode == "fsdp"


def shard_order(
    order: torch.Tensor, batch_size: int, rank: int, world_size: int
) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """This worker's rows of every global batch, and the steps' row counts.

    ``order`` (the same permutation on every worker) is cut into global batches of
    ``batch_size`` rows; the worker takes rows ``rank, rank + world_size, ...`` of each,
    so over all workers each row is taken exactly once per epoch. Read with a batch size
    of ``batch_size // world_size`` (which must divide), the returned order yields one
    local batch per global batch. A last global batch with fewer rows than workers
    leaves some workers none: they get the batch's first row as a stand-in, counted as
    zero real rows, so every worker still takes the same number of steps.

    Returns:
        ``(local order, [(global rows, this worker's real rows) per step])``.
    """
    if batch_size % world_size:
        raise ValueError(f"batch size {batch_size} must divide by {world_size} workers")
    pieces: list[torch.Tensor] = []
    steps: list[tuple[int, int]] = []
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        mine = batch[rank::world_size]
        steps.append((len(batch), len(mine)))
        pieces.append(mine if len(mine) else batch[:1])
    empty = order[:0]
    return (torch.cat(pieces) if pieces else empty), steps


def wrap_model(model: nn.Module, parallel: DataParallel, device: torch.device) -> nn.Module:
    """The module to run training steps through: DDP around ``model``, or FSDP in place.

    With ``"fsdp"`` every block of a ``ModuleList``/``Sequential`` is sharded on its own
    (so only one block's weights are gathered at a time), then the whole model; the
    model object itself becomes the sharded one and is returned.
    """
    if parallel.mode == "fsdp":
        # torch's FSDP package takes ~0.6 s to import; only FSDP trials need it.
        from torch.distributed.fsdp import FSDPModule, fully_shard

        # Innermost containers first: a block holding blocks sharded already shards
        # only its remaining parameters, and no block is sharded twice.
        for module in reversed(list(model.modules())):
            if isinstance(module, nn.ModuleList | nn.Sequential):
                for block in module:
                    if not isinstance(block, FSDPModule) and any(True for _ in block.parameters()):
                        fully_shard(block)
        if not isinstance(model, FSDPModule):
            fully_shard(model)
        return model
    device_ids = [device.index or 0] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def broadcast_(params: list[torch.Tensor]) -> None:
    """Make every worker's ``params`` rank 0's (e.g. a loss's adapter, built per worker)."""
    for param in params:
        dist.broadcast(param.data, src=0)


def sync_gradients(params: list[torch.Tensor], world_size: int) -> None:
    """Average the gradients of ``params`` that no DDP/FSDP wrapper reduces."""
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)
        param.grad /= world_size


def any_worker(flag: bool, device: torch.device) -> bool:
    """True on every worker when ``flag`` is true on any (e.g. a non-finite loss)."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Elementwise sums of ``values`` over the workers."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def gather_rows(rows: int, world_size: int, device: torch.device) -> tuple[int, ...]:
    """Each worker's ``rows`` (rows trained this epoch), in rank order."""
    mine = torch.tensor([rows], dtype=torch.int64, device=device)
    every = [torch.zeros_like(mine) for _ in range(world_size)]
    dist.all_gather(every, mine)
    return tuple(int(t.item()) for t in every)


def model_state(model: nn.Module, parallel: DataParallel | None) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights; with FSDP the full weights, on CPU, at rank 0 only.

    With FSDP this is a collective: every worker must call it; the others get ``{}``.
    """
    if parallel is None or parallel.mode != "fsdp":
        return copy.deepcopy(model.state_dict())
    # torch's distributed checkpoint modules load with FSDP (see wrap_model).
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)
    return {name: value for name, value in state.items() if isinstance(value, torch.Tensor)}
