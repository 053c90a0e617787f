"""Feature taps: named intermediate features of any ``torch.nn.Module``.

Feature-based losses (FitNets, attention transfer, RKD, cosine embedding) compare
what a teacher layer and a student layer compute. This module

* lists the features a model exposes (:func:`model_feature_names`): a model may
  declare them as a ``feature_names`` attribute (module paths, shallow first, as the
  built-in ``mlp`` and ``cnn`` students do); otherwise a best-effort guess is made;
* captures them while the model runs (:class:`FeatureTap`, forward hooks, no change
  to the model's code);
* pairs teacher layers with student layers (:func:`match_layers`): the config's
  explicit mapping, or an automatic one by relative depth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import torch
from torch import nn

from kdforge.data import LossNeeds, ModelOutput
from kdforge.errors import ConfigError


class TappableTeacher(Protocol):
    """What :func:`predict_with_taps` needs of a teacher (:class:`kdforge.Teacher` has it)."""

    @property
    def name(self) -> str:
        """The teacher's plugin name, for messages."""

    def predict(self, x: torch.Tensor) -> ModelOutput:
        """The teacher's output for one batch."""

    def torch_module(self) -> nn.Module | None:
        """The torch model behind ``predict``, or None."""


__all__ = [
    "FeatureTap",
    "TappableTeacher",
    "forward_tapped",
    "match_layers",
    "model_feature_names",
    "predict_with_taps",
    "student_tap",
    "teacher_rows",
]

AutoMode = Literal["all", "last"]


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def model_feature_names(model: nn.Module) -> list[str]:
    """Module paths of the features ``model`` exposes, shallow first.

    A model's own ``feature_names`` attribute (a list or tuple of module paths) wins.
    Otherwise: the top-level children with parameters (the items of a top-level
    ``ModuleList``/``Sequential`` counted one by one), without the last one, which is
    taken to be the output head.

    Args:
        model: Any torch module.
    """
    declared = getattr(model, "feature_names", None)
    if isinstance(declared, list | tuple) and all(isinstance(n, str) for n in declared):
        return list(declared)
    units: list[str] = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList | nn.Sequential) and not isinstance(
            model, nn.Sequential
        ):
            units.extend(
                f"{name}.{sub}" for sub, item in child.named_children() if _has_parameters(item)
            )
        elif _has_parameters(child):
            units.append(name)
    return units[:-1]


def _first_tensor(output: Any) -> torch.Tensor | None:
    # Transformer blocks return tuples whose first item is the hidden state.
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


class FeatureTap:
    """Capture the outputs of named submodules while a model runs (a context manager).

    Example::

        with FeatureTap(model, ["blocks.0", "blocks.1"]) as tap:
            logits = model(x)
        features = tap.pop()   # {"blocks.0": tensor, "blocks.1": tensor}

    Args:
        model: The module to tap.
        names: Module paths (as in ``model.named_modules()``).
        owner: Who the model is, for error messages (e.g. ``"student"``).

    Raises:
        ConfigError: a name is not a submodule of ``model``.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], owner: str = "model") -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ConfigError(
                f"{owner} has no module {missing[0]!r} to read features from; it exposes "
                f"{', '.join(model_feature_names(model)) or 'no features'}",
                hint="name an exposed feature (or any path from model.named_modules()) "
                "in loss.params.layers, or leave layers out for the automatic mapping",
            )
        self.names = list(dict.fromkeys(names))
        self._modules = [modules[n] for n in self.names]
        self._handles: list[Any] = []
        self._captured: dict[str, torch.Tensor] = {}

    def _hook(self, name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is not None:
                self._captured[name] = tensor

        return hook

    def __enter__(self) -> FeatureTap:
        self._captured = {}
        self._handles = [
            module.register_forward_hook(self._hook(name))
            for name, module in zip(self.names, self._modules, strict=True)
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def pop(self) -> dict[str, torch.Tensor]:
        """The captured features in the order of ``names`` (and forget them)."""
        out = {n: self._captured[n] for n in self.names if n in self._captured}
        self._captured = {}
        return out


def predict_with_taps(
    teacher: TappableTeacher, x: torch.Tensor, names: Sequence[str] | None = None
) -> ModelOutput:
    """Run ``teacher.predict(x)`` and return its output with named features added.

    Features come from forward hooks on ``teacher.torch_module()`` and from what
    ``predict`` returns itself (those win on equal names).

    Args:
        teacher: A loaded teacher.
        x: One batch of inputs.
        names: Features to return; None returns every exposed one.

    Raises:
        ConfigError: a requested feature does not exist (the message lists those that do).
    """
    module = teacher.torch_module()
    tapped: dict[str, torch.Tensor] = {}
    if module is None:
        output = teacher.predict(x)
        exposed: list[str] = []
    else:
        exposed = model_feature_names(module)
        modules = dict(module.named_modules())
        wanted = exposed if names is None else [n for n in names if n in modules]
        with FeatureTap(module, wanted, owner=f"teacher {teacher.name!r}") as tap:
            output = teacher.predict(x)
        tapped = tap.pop()
    features = {**tapped, **output.features}
    if names is not None:
        missing = [n for n in names if n not in features]
        if missing:
            available = list(dict.fromkeys([*exposed, *output.features]))
            raise ConfigError(
                f"teacher {teacher.name!r} has no feature {missing[0]!r}; it exposes: "
                f"{', '.join(available) or 'none'}",
                hint="name one of these in loss.params.layers, or leave layers out for "
                "the automatic mapping by relative depth",
            )
        features = {n: features[n] for n in names}
    return ModelOutput(output.logits, features)


def _pick(count: int, total: int) -> list[int]:
    """``count`` indices into ``total`` items, spread by relative depth, last -> last."""
    return [-(-(i + 1) * total // count) - 1 for i in range(count)]


def match_layers(
    teacher_names: Sequence[str],
    student_names: Sequence[str],
    layers: Mapping[str, str] | None = None,
    auto: AutoMode = "all",
    where: str = "loss.params.layers",
) -> list[tuple[str, str]]:
    """Pair teacher features with student features.

    With ``layers`` (teacher name -> student name) the pairs are exactly those.
    Otherwise ``auto="all"`` pairs ``k = min(#teacher, #student)`` layers by relative
    depth (the i-th of k pairs takes, on each side, the layer at depth ``(i+1)/k``,
    so the deepest layers always pair); ``auto="last"`` pairs only the deepest two.

    Args:
        teacher_names: Teacher features available, shallow first.
        student_names: Student features available, shallow first.
        layers: Explicit mapping from the config, or None.
        auto: Automatic mapping mode.
        where: Config key for error messages.

    Returns:
        ``(teacher_name, student_name)`` pairs, shallow first.

    Raises:
        ConfigError: a side exposes no features, or the mapping names an unknown one.
    """
    if layers:
        for teacher_name, student_name in layers.items():
            if teacher_name not in teacher_names:
                raise ConfigError(
                    f"{where}: the teacher has no feature {teacher_name!r}; it exposes: "
                    f"{', '.join(teacher_names) or 'none'}",
                    hint="use one of the teacher's feature names as the mapping's key",
                )
            if student_name not in student_names:
                raise ConfigError(
                    f"{where}: the student has no feature {student_name!r}; it exposes: "
                    f"{', '.join(student_names) or 'none'}",
                    hint="use one of the student's feature names as the mapping's value",
                )
        return list(layers.items())
    for side, names in (("teacher", teacher_names), ("student", student_names)):
        if not names:
            raise ConfigError(
                f"{where}: the {side} exposes no intermediate features for a feature-based loss",
                hint=f"give the {side} model a `feature_names` attribute (module paths) or "
                "use a search space / teacher that exposes features",
            )
    if auto == "last":
        return [(teacher_names[-1], student_names[-1])]
    count = min(len(teacher_names), len(student_names))
    t_idx = _pick(count, len(teacher_names))
    s_idx = _pick(count, len(student_names))
    return [(teacher_names[t], student_names[s]) for t, s in zip(t_idx, s_idx, strict=True)]


def student_tap(model: nn.Module, needs: LossNeeds | None) -> FeatureTap | None:
    """A tap on the student's exposed features (plus explicitly mapped ones), if needed.

    Args:
        model: The student.
        needs: The loss's needs; None or ``features=False`` gives None.
    """
    if needs is None or not needs.features:
        return None
    names = list(dict.fromkeys([*model_feature_names(model), *needs.student_layers]))
    return FeatureTap(model, names, owner="student")


def forward_tapped(
    model: nn.Module, x: torch.Tensor, tap: FeatureTap | None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``model(x)`` and the features ``tap`` captured during it (``{}`` without a tap)."""
    if tap is None:
        return model(x), {}
    with tap:
        logits = model(x)
    return logits, tap.pop()


def teacher_rows(
    logits: torch.Tensor | None, features: Mapping[str, torch.Tensor] | None, idx: torch.Tensor
) -> ModelOutput:
    """The teacher's precomputed outputs for the rows ``idx`` of the training set."""
    return ModelOutput(
        logits[idx] if logits is not None else None,
        {name: value[idx] for name, value in (features or {}).items()},
    )
