"""Loss ``composite``: a weighted sum of other losses, weights searchable.

Config shape::

    loss:
      name: composite
      params:
        terms:
          - name: hinton_kd
            weight: 1.0                      # a number fixes the weight ...
            hparams: {temperature: 4.0}      # ... and a term's hyperparameters
          - name: fitnets
            weight: {low: 0.1, high: 10, log: true}   # ... a range searches it
            params: {layers: {blocks.1: blocks.0}}

The composite's hyperparameters are ``<key>.weight`` and ``<key>.<hparam>`` for every
term (``key`` defaults to the term's loss name; give ``key`` when one loss appears
twice). They join the search like any loss hyperparameter, and ``loss.hparams`` may
override them by those names. Learnable parts, needed features and logits of the
terms are all passed through, and so is the task: the composite fits the tasks whose
outputs every term takes (the intersection of the terms' output kinds).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator
from torch import nn

import kdforge
from kdforge import Range, get_registry, validate_params
from kdforge.errors import ConfigError
from kdforge.interfaces import (
    OUTPUT_KINDS,
    HParam,
    LossNeeds,
    LossResult,
    LossStrategy,
    ModelOutput,
    PluginParams,
)


class TermConfig(PluginParams):
    """One term of a composite loss."""

    name: str = Field(description="Registered loss name.")
    key: str | None = Field(
        None, description="Prefix of this term's hyperparameters (default: the loss name)."
    )
    weight: float | Range = Field(
        1.0, description="A number fixes the weight; a range searches it."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="The loss's parameters.")
    hparams: dict[str, float | Range] = Field(
        default_factory=dict, description="Fix or re-range the loss's hyperparameters."
    )

    @property
    def prefix(self) -> str:
        """The key of this term's hyperparameters."""
        return self.key or self.name


class CompositeParams(PluginParams):
    """Parameters of ``composite``: the terms."""

    terms: list[TermConfig] = Field(min_length=1, description="The losses to add up.")

    @model_validator(mode="after")
    def _check(self) -> CompositeParams:
        seen: set[str] = set()
        for term in self.terms:
            if term.prefix in seen:
                raise ValueError(
                    f"two terms use the key {term.prefix!r}; give each a distinct `key`"
                )
            if "." in term.prefix or "/" in term.prefix:
                raise ValueError(f"term key {term.prefix!r} may not contain '.' or '/'")
            seen.add(term.prefix)
        return self


def _term_classes(params: CompositeParams) -> list[tuple[type[LossStrategy], PluginParams]]:
    """Each term's loss class and validated params (errors name the config key)."""
    out = []
    for i, term in enumerate(params.terms):
        record = get_registry().get("loss", term.name)
        if issubclass(record.cls, Composite):
            raise ConfigError(
                f"loss.params.terms[{i}].name: a composite loss cannot contain another composite",
                hint="list all the terms in one composite",
            )
        out.append((record.cls, validate_params(record, term.params, f"loss.params.terms[{i}]")))
    return out


def _fixed(name: str, value: float, help: str = "") -> HParam:
    return HParam(name, value, value, default=value, help=help)


def _ranged(name: str, setting: Range, base: HParam | None) -> HParam:
    default = base.default if base is not None and base.default is not None else 1.0
    default = min(max(default, setting.low), setting.high)
    kind = base.kind if base is not None else "float"
    return HParam(
        name, setting.low, setting.high, setting.log, kind, default, base.help if base else ""
    )


def _term_hparams(
    index: int, term: TermConfig, cls: type[LossStrategy], params: PluginParams
) -> list[HParam]:
    weight_name = f"{term.prefix}.weight"
    if isinstance(term.weight, Range):
        out = [_ranged(weight_name, term.weight, None)]
    else:
        out = [_fixed(weight_name, float(term.weight), f"Weight of {term.name}.")]
    declared = {hp.name: hp for hp in cls.declared_hyperparameters(params)}
    unknown = [k for k in term.hparams if k not in declared]
    if unknown:
        raise ConfigError(
            f"loss.params.terms[{index}].hparams.{unknown[0]}: loss {term.name!r} has no "
            f"hyperparameter {unknown[0]!r}; it has: {', '.join(declared) or 'none'}",
            hint="use one of the listed names (see `kdforge plugins show " + term.name + "`)",
        )
    for hp_name, hp in declared.items():
        name = f"{term.prefix}.{hp_name}"
        setting = term.hparams.get(hp_name)
        if setting is None:
            out.append(HParam(name, hp.low, hp.high, hp.log, hp.kind, hp.default, hp.help))
        elif isinstance(setting, Range):
            out.append(_ranged(name, setting, hp))
        else:
            out.append(_fixed(name, float(setting), hp.help))
    return out


class Composite(LossStrategy):
    """A weighted sum of other losses; each weight and term hyperparameter is searchable."""

    name = "composite"
    Params = CompositeParams
    # Without params (no terms known yet) a composite can be built for any task.
    output_kinds = frozenset(OUTPUT_KINDS)

    def __init__(
        self, params: PluginParams | None = None, hparams: dict[str, float] | None = None
    ) -> None:
        super().__init__(params, hparams)
        p = self._composite_params
        self.terms: list[tuple[str, float, LossStrategy]] = []
        for term, (cls, term_params) in zip(p.terms, _term_classes(p), strict=True):
            prefix = f"{term.prefix}."
            own = {
                k[len(prefix) :]: v
                for k, v in self.hparams.items()
                if k.startswith(prefix) and k != f"{prefix}weight"
            }
            self.terms.append((term.prefix, self.hparams[f"{prefix}weight"], cls(term_params, own)))

    @property
    def _composite_params(self) -> CompositeParams:
        assert isinstance(self.params, CompositeParams)
        return self.params

    @classmethod
    def declared_hyperparameters(cls, params: PluginParams | None) -> tuple[HParam, ...]:
        """``<key>.weight`` and ``<key>.<hparam>`` of every term."""
        if not isinstance(params, CompositeParams):
            return ()
        out: list[HParam] = []
        for i, (term, (term_cls, term_params)) in enumerate(
            zip(params.terms, _term_classes(params), strict=True)
        ):
            out.extend(_term_hparams(i, term, term_cls, term_params))
        return tuple(out)

    @classmethod
    def supported_output_kinds(cls, params: PluginParams | None) -> frozenset[str]:
        """The output kinds every term takes (all kinds before the terms are known)."""
        if not isinstance(params, CompositeParams):
            return cls.output_kinds
        kinds = frozenset(OUTPUT_KINDS)
        for term_cls, term_params in _term_classes(params):
            kinds &= term_cls.supported_output_kinds(term_params)
        return kinds

    @classmethod
    def reads_top_k(cls, params: PluginParams | None) -> bool:
        """Whether every term reads sparse top-k teacher logits (or no logits at all)."""
        if not isinstance(params, CompositeParams):
            return False
        return all(term_cls.reads_top_k(p) for term_cls, p in _term_classes(params))

    @classmethod
    def needs(cls, params: PluginParams | None) -> LossNeeds:
        """The union of the terms' needs."""
        if not isinstance(params, CompositeParams):
            return LossNeeds()
        needs = [term_cls.needs(term_params) for term_cls, term_params in _term_classes(params)]
        featured = [n for n in needs if n.features]
        teacher_layers: tuple[str, ...] | None = None
        if featured and all(n.teacher_layers is not None for n in featured):
            teacher_layers = tuple(
                dict.fromkeys(name for n in featured for name in (n.teacher_layers or ()))
            )
        return LossNeeds(
            logits=any(n.logits for n in needs),
            features=bool(featured),
            teacher_layers=teacher_layers,
            student_layers=tuple(dict.fromkeys(name for n in needs for name in n.student_layers)),
        )

    def bind(self, student: ModelOutput, teacher: ModelOutput) -> None:
        """Bind every term (after passing the task on: a term may bind by it)."""
        self._share_task()
        for _, _, loss in self.terms:
            loss.bind(student, teacher)

    def _share_task(self) -> None:
        # The host sets ``task`` on the composite only; each term's label term needs it.
        for _, _, loss in self.terms:
            loss.task = self.task

    def parameters(self) -> list[nn.Parameter]:
        """Every term's learnable parameters."""
        return [p for _, _, loss in self.terms for p in loss.parameters()]

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``sum_k weight_k * term_k``; parts are ``<key>`` and ``<key>.<part>``."""
        self._share_task()
        total: torch.Tensor | None = None
        parts: dict[str, float] = {}
        for key, weight, loss in self.terms:
            result = loss(student, teacher, labels)
            contribution = weight * result.total
            total = contribution if total is None else total + contribution
            parts[key] = float(result.total.detach())
            parts.update({f"{key}.{name}": value for name, value in result.parts.items()})
        assert total is not None
        return LossResult(total, parts)


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``composite`` loss."""
    register("composite", Composite)
