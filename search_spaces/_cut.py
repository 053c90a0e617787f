"""Structured cuts of a torch model: drop whole blocks, then prune channels and units.

Used by the ``pruned`` search space. A cut is described by plain values only (per-stage
ratios, an importance criterion, the indices of the blocks to drop, ``round_to``), so a
pruned student is rebuilt from *teacher + cut* and never unpickled.

Channel pruning uses Torch-Pruning's dependency graph (coupled layers, e.g. the two
sides of a residual sum, are cut together) with *local* ratios: how many channels a
group keeps depends only on the graph and the ratio, never on the weights. The
importance criterion only decides *which* channels go. So the same cut of a freshly
initialised copy of the teacher has exactly the shapes of the cut of the trained
teacher, which is what lets a checkpoint be rebuilt from the teacher's architecture and
the student's own ``state_dict``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from kdforge.data import DataInfo
from kdforge.errors import ConfigError

__all__ = [
    "IMPORTANCES",
    "apply_cut",
    "droppable_blocks",
    "example_batch",
    "kept_channels",
    "parameter_count",
    "require_torch_pruning",
]

#: Importance criteria offered, each a Torch-Pruning importance (built in ``_importance``).
IMPORTANCES = ("l1", "l2", "lamp", "fpgm", "bn_scale")

_ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def require_torch_pruning() -> Any:
    """The ``torch_pruning`` module, or a ConfigError naming the ``[prune]`` extra."""
    # torch_pruning belongs to the optional [prune] extra: imported only when a cut runs.
    try:
        import torch_pruning
    except ImportError:
        raise ConfigError(
            "search space 'pruned' needs the `torch-pruning` package (extra kdforge[prune]), "
            "which is not installed",
            hint="pip install 'kdforge[prune]'",
        ) from None
    return torch_pruning


def example_batch(info: DataInfo, n: int = 2) -> torch.Tensor:
    """A fixed batch of ``info``'s inputs to trace the graph with (zeros for token ids)."""
    dtype = getattr(torch, info.input_dtype)
    if dtype.is_floating_point:
        return torch.randn(n, *info.input_shape, generator=torch.Generator().manual_seed(0)).to(
            dtype
        )
    return torch.zeros(n, *info.input_shape, dtype=dtype)


def _forward_once(model: nn.Module, example: torch.Tensor, handles: list[Any]) -> None:
    """Run ``model`` on ``example`` without gradients, then remove the hooks ``handles``."""
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()


def _execution_order(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Conv/Linear layers in the order the forward pass first runs them."""
    order: list[nn.Module] = []
    seen: set[int] = set()

    def hook(module: nn.Module, _args: Any, _out: Any) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            order.append(module)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _ROOT_TYPES)]
    _forward_once(model, example, handles)
    return order


def droppable_blocks(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Module paths of blocks that can be replaced by the identity, in module order.

    A block is an item of an ``nn.Sequential`` or ``nn.ModuleList`` that has parameters
    and children of its own, takes one tensor and returns a tensor of the same shape
    (e.g. a residual block, or a hidden layer as wide as its input). The block holding
    the output layer is never offered.
    """
    order = _execution_order(model, example)
    head = order[-1] if order else None
    candidates: dict[str, nn.Module] = {}
    for path, module in model.named_modules():
        if not isinstance(module, nn.Sequential | nn.ModuleList):
            continue
        for sub, child in module.named_children():
            has_children = any(True for _ in child.children())
            has_params = any(True for _ in child.parameters())
            holds_head = head is not None and any(m is head for m in child.modules())
            if has_children and has_params and not holds_head:
                candidates[f"{path}.{sub}" if path else sub] = child
    keep: set[str] = set()
    handles = []
    for path, child in candidates.items():

        def hook(_m: nn.Module, args: Any, out: Any, path: str = path) -> None:
            if (
                len(args) == 1
                and isinstance(args[0], torch.Tensor)
                and isinstance(out, torch.Tensor)
                and args[0].shape == out.shape
            ):
                keep.add(path)

        handles.append(child.register_forward_hook(hook))
    _forward_once(model, example, handles)
    return [p for p in candidates if p in keep]


def _importance(tp: Any, name: str) -> Any:
    imp = tp.importance
    if name == "l1":
        return imp.GroupMagnitudeImportance(p=1)
    if name == "l2":
        return imp.GroupMagnitudeImportance(p=2)
    if name == "lamp":
        return imp.LAMPImportance(p=2)
    if name == "fpgm":
        return imp.FPGMImportance(p=2)
    if name == "bn_scale":
        return imp.BNScaleImportance()
    raise ConfigError(f"unknown importance {name!r}", hint=f"use one of {', '.join(IMPORTANCES)}")


def kept_channels(n: int, ratio: float, round_to: int) -> int:
    """How many of ``n`` channels a group keeps at ``ratio`` (at least ``min(n, round_to)``)."""
    keep = n - int(n * ratio)
    if round_to > 1:
        keep -= keep % round_to
    return max(keep, min(n, round_to), 1)


def apply_cut(
    teacher: nn.Module,
    example: torch.Tensor,
    *,
    ratios: Sequence[float],
    importance: str,
    drop: Sequence[str] = (),
    round_to: int = 1,
) -> nn.Module:
    """A pruned copy of ``teacher`` (the teacher itself is left untouched).

    Args:
        teacher: The model to cut.
        example: A batch of its inputs (traces the dependency graph).
        ratios: Fraction of channels/units removed per stage: the prunable layers, in
            forward order and without the output layer, are split into
            ``len(ratios)`` consecutive stages.
        importance: Which channels go: one of :data:`IMPORTANCES`.
        drop: Paths of blocks (see :func:`droppable_blocks`) replaced by the identity.
        round_to: Every pruned group keeps a multiple of this many channels.
    """
    model = copy.deepcopy(teacher).cpu().eval()
    for path in drop:
        model.set_submodule(path, nn.Identity())
    if not any(r > 0 for r in ratios):
        return model
    tp = require_torch_pruning()
    order = _execution_order(model, example)
    if len(order) < 2:
        return model  # nothing but the output layer: no hidden channels to cut
    head, hidden = order[-1], order[:-1]
    stages = len(ratios)
    stage_of = {id(m): min(stages - 1, i * stages // len(hidden)) for i, m in enumerate(hidden)}
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    scorer = _importance(tp, importance)
    plans = []
    # Importance is scored on the uncut model for every group, then the groups are cut.
    for group in graph.get_all_groups(ignored_layers=[head], root_module_types=list(_ROOT_TYPES)):
        root, handler = group[0].dep.target.module, group[0].dep.handler
        if id(root) not in stage_of or getattr(root, "groups", 1) > 1:
            continue  # not run in forward, or a grouped conv (channels tied in blocks)
        n = graph.get_out_channels(root)
        if not n:
            continue
        n_cut = n - kept_channels(n, ratios[stage_of[id(root)]], round_to)
        if n_cut <= 0:
            continue
        scores = scorer(group)
        if scores is None:
            continue  # the criterion has nothing to score here (e.g. no BatchNorm)
        idxs = torch.argsort(scores.cpu(), stable=True)[:n_cut].tolist()
        plans.append((root, handler, sorted(idxs)))
    for root, handler, idxs in plans:
        group = graph.get_pruning_group(root, handler, idxs=idxs)
        if graph.check_pruning_group(group):
            group.prune()
    return model


def parameter_count(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
