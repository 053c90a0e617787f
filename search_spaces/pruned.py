"""Search space ``pruned``: students cut from the teacher by structured pruning.

The search's teacher (any teacher whose :meth:`~kdforge.Teacher.torch_module` is a torch
model, not only kdforge's own architectures) is bound to the space by the driver
(:meth:`~kdforge.SearchSpace.bind_teacher`). Each trial samples a *cut*:

* ``ratio`` (``stages: 1``) or ``ratio_0 .. ratio_{stages-1}``: the fraction of
  channels/units removed from every prunable group, per stage (the teacher's Conv and
  Linear layers in forward order, output layer excluded, split into ``stages`` runs);
* ``importance``: which channels go (magnitude L1/L2, LAMP, FPGM, BatchNorm scale);
* ``drop_<i>``: whether the i-th droppable block (a block whose output has its input's
  shape, e.g. a residual block) is replaced by the identity, at most
  ``max_dropped_blocks`` of them.

The student is the cut teacher *with the teacher's weights*; the trial then distills it
with the configured loss. It keeps the teacher's module paths, so feature losses pair
teacher and student layers of the same name.

Rebuilding: ``arch`` also holds ``_teacher_recipe``, a JSON string saying how to build the
teacher's architecture again: a kdforge checkpoint's ``space``/``arch``/``info`` (no file
needed), or else the teacher plugin's ``name``/``params`` (its files are loaded again, and
its fingerprint must match). Cuts are shape-deterministic (see ``_cut``), so
``build(arch)`` + the student's ``state_dict`` gives the trained student back: nothing is
unpickled. The from-scratch baseline (``init_from_teacher: False``) re-initialises the
cut model's weights, so the distillation gain includes what the inherited weights bring.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

import kdforge
from kdforge import PluginRef, build_checkpoint_model, get_registry, instantiate
from kdforge.checkpoint import FORMAT, checkpoint_info, load_checkpoint
from kdforge.data import DataInfo
from kdforge.errors import CheckpointError, ConfigError, KDForgeError
from kdforge.interfaces import PluginParams, SearchSpace, Teacher
from kdforge.search_spaces._cut import (
    IMPORTANCES,
    apply_cut,
    droppable_blocks,
    example_batch,
    require_torch_pruning,
)

__all__ = ["PrunedParams", "PrunedSpace"]

Importance = Literal["l1", "l2", "lamp", "fpgm", "bn_scale"]

_BIND_HINT = (
    "run it through `kdforge search`, which binds the search's teacher, "
    "or set student.params.teacher_path"
)


class PrunedParams(PluginParams):
    """Ranges of the ``pruned`` search space."""

    min_ratio: float = Field(0.0, ge=0, lt=1, description="Smallest fraction of channels removed.")
    max_ratio: float = Field(0.9, ge=0, lt=1, description="Largest fraction of channels removed.")
    stages: int = Field(
        1,
        ge=1,
        le=8,
        description="Consecutive runs of layers with their own ratio; 1: one global `ratio`.",
    )
    importances: list[Importance] = Field(
        default_factory=lambda: list[Importance](["l1", "l2", "lamp"]),
        min_length=1,
        description="Importance criteria to choose from: l1, l2, lamp, fpgm, bn_scale.",
    )
    max_dropped_blocks: int = Field(
        1, ge=0, description="Most blocks replaced by the identity (0: never drop blocks)."
    )
    round_to: int = Field(
        1, ge=1, description="Pruned groups keep a multiple of this many channels."
    )
    teacher_path: str | None = Field(
        None, description="kdforge teacher checkpoint to cut (default: the search's teacher)."
    )

    @model_validator(mode="after")
    def _check(self) -> PrunedParams:
        if self.min_ratio > self.max_ratio:
            raise ValueError(f"min_ratio ({self.min_ratio}) > max_ratio ({self.max_ratio})")
        return self


class PrunedSpace(SearchSpace):
    """Students cut from the teacher: channel ratios per stage, importance, dropped blocks."""

    name = "pruned"
    Params = PrunedParams

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        self._teacher: nn.Module | None = None
        self._recipe: str | None = None
        self._blocks: dict[tuple[Any, ...], list[str]] = {}

    # -- binding ----------------------------------------------------------------------

    def bind_teacher(self, teacher: Teacher | None) -> None:
        """Remember the teacher to cut and how to rebuild its architecture.

        Raises:
            ConfigError: ``torch-pruning`` is missing, or there is no torch teacher.
        """
        require_torch_pruning()
        p = self.params
        assert isinstance(p, PrunedParams)
        path = p.teacher_path
        if path is None and teacher is not None:
            path = getattr(getattr(teacher, "params", None), "path", None)
        payload = _kdforge_checkpoint(path) if path else None
        if payload is not None:
            self._teacher = build_checkpoint_model(payload, source=str(path))
            self._recipe = json.dumps(
                {"space": payload["space"], "arch": payload["arch"], "info": payload["info"]},
                sort_keys=True,
            )
        elif p.teacher_path is not None:
            raise ConfigError(
                f"student.params.teacher_path: {p.teacher_path} is not a kdforge checkpoint",
                hint="give a file written by `kdforge train-teacher`, or leave teacher_path "
                "unset to cut the search's teacher",
            )
        elif teacher is not None:
            module = teacher.torch_module()
            if module is None or isinstance(module, torch.jit.ScriptModule):
                raise ConfigError(
                    f"search space 'pruned': teacher {teacher.name!r} is not a torch model "
                    "that can be cut (no torch_module(), or a TorchScript archive)",
                    hint="use a kdforge checkpoint, a state dict with a factory, or a "
                    "Hugging Face teacher",
                )
            self._teacher = module
            self._recipe = json.dumps(
                {
                    "teacher": teacher.name,
                    "params": teacher.params.model_dump(mode="json"),
                    "fingerprint": teacher.fingerprint(),
                },
                sort_keys=True,
            )
        else:
            raise ConfigError("search space 'pruned' needs a teacher to cut", hint=_BIND_HINT)
        self._teacher = self._teacher.cpu().eval()
        self._blocks = {}

    def _blocks_for(self, teacher: nn.Module, info: DataInfo) -> list[str]:
        key = (id(teacher), tuple(info.input_shape), info.input_dtype)
        if key not in self._blocks:
            self._blocks[key] = droppable_blocks(teacher, example_batch(info))
        return self._blocks[key]

    # -- the interface ----------------------------------------------------------------

    def suggest(self, trial: Any, info: DataInfo) -> dict[str, Any] | None:
        """Sample the ratio(s), the importance and the blocks to drop.

        Returns ``_teacher_recipe``, plus ``importance`` when only one is configured and
        ``round_to`` when it is not 1.
        """
        p = self.params
        assert isinstance(p, PrunedParams)
        # Unbound (e.g. `kdforge plugins show`), only the cut's values are sampled; the
        # search driver always binds the teacher first.
        extra: dict[str, Any] = {} if self._recipe is None else {"_teacher_recipe": self._recipe}
        if p.round_to > 1:
            extra["round_to"] = p.round_to  # a rebuild from a checkpoint has default params
        if p.stages == 1:
            trial.suggest_float("ratio", p.min_ratio, p.max_ratio)
        else:
            for i in range(p.stages):
                trial.suggest_float(f"ratio_{i}", p.min_ratio, p.max_ratio)
        if len(p.importances) > 1:
            trial.suggest_categorical("importance", list(p.importances))
        else:
            extra["importance"] = p.importances[0]
        blocks = [] if self._teacher is None else self._blocks_for(self._teacher, info)
        dropped = 0
        for i, _ in enumerate(blocks):
            if dropped >= p.max_dropped_blocks:
                break
            dropped += bool(trial.suggest_categorical(f"drop_{i}", [False, True]))
        return extra

    def build(self, arch: dict[str, Any], info: DataInfo) -> nn.Module:
        """Cut the teacher as ``arch`` says (the bound teacher, or one rebuilt from the recipe).

        With ``init_from_teacher: False`` in ``arch`` (the from-scratch baseline) the cut
        model's weights are initialised afresh instead of inherited.

        Raises:
            ConfigError: no teacher bound and no ``_teacher_recipe`` in ``arch``, or a cut
                the teacher's graph does not allow.
        """
        teacher = self._teacher
        if teacher is None:
            teacher = _rebuild_teacher(arch.get("_teacher_recipe"))
        ratios = _ratios(arch)
        blocks = self._blocks_for(teacher, info)
        drop = [path for i, path in enumerate(blocks) if arch.get(f"drop_{i}")]
        # A block inside one already dropped is gone with it.
        drop = [d for d in drop if not any(d.startswith(o + ".") for o in drop if o != d)]
        importance = str(arch.get("importance", "l1"))
        if importance not in IMPORTANCES:
            raise ConfigError(
                f"student importance {importance!r} is not one of {', '.join(IMPORTANCES)}"
            )
        model = apply_cut(
            teacher,
            example_batch(info),
            ratios=ratios,
            importance=importance,
            drop=drop,
            round_to=int(arch.get("round_to", self._round_to())),
        )
        if arch.get("init_from_teacher") is False:
            # The from-scratch baseline: the cut's architecture without the teacher's weights.
            for module in model.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
        return model

    def _round_to(self) -> int:
        p = self.params
        assert isinstance(p, PrunedParams)
        return p.round_to


def _ratios(arch: dict[str, Any]) -> list[float]:
    if "ratio" in arch:
        return [float(arch["ratio"])]
    stages = sorted(int(k.split("_", 1)[1]) for k in arch if k.startswith("ratio_"))
    if not stages:
        raise ConfigError(
            "student: a pruned architecture needs `ratio` or `ratio_0`..",
            hint="give the values the search sampled (see best_config.yaml)",
        )
    return [float(arch[f"ratio_{i}"]) for i in stages]


def _kdforge_checkpoint(path: str) -> dict[str, Any] | None:
    """The payload of a kdforge checkpoint at ``path``, or None for any other file."""
    try:
        payload = load_checkpoint(path)
    except CheckpointError:
        return None
    return payload if payload.get("format") == FORMAT else None


def _rebuild_teacher(recipe: Any) -> nn.Module:
    """The teacher's architecture from ``_teacher_recipe`` (see the module docstring)."""
    if not isinstance(recipe, str):
        raise ConfigError(
            "search space 'pruned': no teacher was bound and the architecture has no "
            "_teacher_recipe to rebuild it from",
            hint=_BIND_HINT,
        )
    try:
        spec = json.loads(recipe)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"student._teacher_recipe is not valid JSON: {exc}") from None
    if "space" in spec:
        record = get_registry().get("search_space", str(spec["space"]))
        info = checkpoint_info({"info": spec["info"]})
        # Weights are not needed: the cut's shapes do not depend on them.
        return record.cls().build(dict(spec["arch"]), info).eval()
    try:
        teacher = instantiate(
            "teacher",
            PluginRef(name=str(spec["teacher"]), params=dict(spec["params"])),
            "student._teacher_recipe",
        )
        teacher.load()
    except KDForgeError as exc:
        raise ConfigError(
            f"search space 'pruned': cannot load the teacher the student was cut from: {exc}",
            hint="a pruned student of a non-kdforge teacher is rebuilt from that teacher's files",
        ) from None
    if teacher.fingerprint() != spec.get("fingerprint"):
        raise ConfigError(
            f"search space 'pruned': teacher {spec['teacher']!r} changed since the student "
            "was cut from it (fingerprint differs)",
            hint="rebuild the student with the teacher it was cut from",
        )
    module = teacher.torch_module()
    if module is None:
        raise ConfigError(f"teacher {spec['teacher']!r} has no torch module to cut")
    return module.cpu().eval()


@kdforge.hookimpl
def register_search_spaces(register: kdforge.Register) -> None:
    """Register the ``pruned`` search space."""
    register("pruned", PrunedSpace)
