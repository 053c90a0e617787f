"""What ``kdforge plugins show NAME`` prints: a plugin's origin, docs, parameters and
the hyperparameters it adds to the search space.

The same facts are available as data (:func:`param_infos`, :func:`searched_params`) for
docs generators and tests.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any

from kdforge.data import DataInfo
from kdforge.errors import PluginError, closest_match
from kdforge.interfaces import LossStrategy
from kdforge.plugin_host.manager import PluginRecord, PluginRegistry, get_registry

# Optuna is imported inside the functions that sample a space: `kdforge plugins show`
# needs it only for search spaces.

__all__ = [
    "ParamInfo",
    "SearchedParam",
    "describe",
    "describe_plugin",
    "param_infos",
    "searched_params",
]

#: Data shape used to sample a search space when describing it (no data is loaded).
EXAMPLE_INFO = DataInfo(name="example", input_shape=(1, 8, 8), num_classes=10)
_SAMPLES = 32


@dataclass(frozen=True)
class ParamInfo:
    """One config parameter of a plugin (a field of its ``Params`` model)."""

    name: str
    type: str
    default: str
    constraints: str
    description: str


@dataclass(frozen=True)
class SearchedParam:
    """One hyperparameter a plugin adds to the search (named as in MLflow trial params)."""

    name: str
    type: str
    domain: str
    default: str
    help: str


def param_infos(cls: Any) -> list[ParamInfo]:
    """The config parameters of plugin class ``cls`` with types, defaults, constraints."""
    out = []
    for name, field in cls.Params.model_fields.items():
        if field.is_required():
            default = "required"
        else:
            default = repr(field.get_default(call_default_factory=True))
        out.append(
            ParamInfo(
                name=name,
                type=_type_name(field.annotation),
                default=default,
                constraints=", ".join(_constraint(m) for m in field.metadata if _constraint(m)),
                description=field.description or "",
            )
        )
    return out


def searched_params(record: PluginRecord) -> list[SearchedParam]:
    """Hyperparameters the plugin adds to the search space, named ``loss.x``/``student.x``.

    A loss declares them (``hyperparameters``); a search space's are found by sampling
    it with its default parameters (``conditional`` marks names not always sampled).
    Other kinds add none.
    """
    if record.kind == "loss":
        return [
            SearchedParam(
                name=f"loss.{hp.name}",
                type=hp.kind,
                domain=f"[{hp.low:g}, {hp.high:g}]" + (" log" if hp.log else ""),
                default="-" if hp.default is None else f"{hp.default:g}",
                help=hp.help,
            )
            for hp in _loss_hyperparameters(record.cls)
        ]
    if record.kind == "search_space":
        return _sample_space(record)
    return []


def describe(record: PluginRecord) -> str:
    """A multi-line description of one plugin for the terminal."""
    cls = record.cls
    lines = [
        f"{record.name} ({record.kind.replace('_', ' ')})",
        f"  source:      {record.source} {record.version}".rstrip(),
        f"  entry point: {record.entry_point or '-'}",
        f"  class:       {cls.__module__}.{cls.__qualname__}",
    ]
    suffix = getattr(cls, "suffix", "")
    if record.kind == "exporter" and suffix:
        lines.append(f"  file suffix: {suffix}")
    doc = inspect.getdoc(cls) or "(no docstring)"
    lines += ["", *("  " + line for line in doc.splitlines()), ""]
    params = param_infos(cls)
    lines.append("  parameters (<section>.params):" if params else "  parameters: none")
    for p in params:
        extra = f"; {p.constraints}" if p.constraints else ""
        lines.append(f"    {p.name}: {p.type} = {p.default}{extra}")
        if p.description:
            lines.append(f"        {p.description}")
    searched = searched_params(record)
    if searched:
        lines.append("  searched hyperparameters (MLflow params of each trial):")
        for s in searched:
            default = f", default {s.default}" if s.default != "-" else ""
            lines.append(f"    {s.name}: {s.type} {s.domain}{default}")
            if s.help:
                lines.append(f"        {s.help}")
    elif record.kind == "loss" and _overrides_declared(cls):
        lines.append("  searched hyperparameters: depend on its params (see above)")
    else:
        lines.append("  searched hyperparameters: none")
    return "\n".join(lines)


def describe_plugin(
    name: str, kind: str | None = None, registry: PluginRegistry | None = None
) -> str:
    """Describe every plugin called ``name`` (of ``kind`` when given).

    Raises:
        PluginError: no such plugin; the error says why when a plugin that failed to
            load or a name clash is the reason, else lists the names and the closest.
    """
    registry = registry or get_registry()
    matches = registry.find(name, kind)
    if matches:
        return "\n\n".join(describe(r) for r in matches)
    kinds = [kind] if kind else list(registry.records)
    for k in kinds:
        exact = any((k, name) in f.names for f in registry.failures)
        if (k, name) in registry.conflicts or exact:
            registry.get(k, name)  # raises the specific error, of the right kind
    # A plugin that failed to import registered nothing: its kind is unknown, so the
    # error names none (it used to call every such plugin a "dataset", the first kind).
    failure = registry.failure_for(kind, name) if kind else _failure_any_kind(registry, name)
    if failure is not None:
        label = kind.replace("_", " ") if kind else "plugin"
        raise PluginError(
            f"{label} {name!r} is not available: plugin {failure.entry_point!r} from "
            f"distribution {failure.source!r} failed to "
            f"{'import' if failure.stage == 'import' else 'register'}: {failure.error}",
            hint=f"fix or reinstall {failure.source!r} (`pip install -U {failure.source}`); "
            "`kdforge plugins` lists what loaded",
        )
    names = sorted({r.name for r in registry.list(kind)})
    suggestion = closest_match(name, names)
    raise PluginError(
        f"unknown plugin {name!r}; available: {', '.join(names) or 'none'}",
        hint=f"did you mean {suggestion!r}?" if suggestion else "`kdforge plugins` lists them",
    )


def _failure_any_kind(registry: PluginRegistry, name: str) -> Any:
    """The failed plugin that most likely provides ``name``, whatever its kind."""
    return next((f for f in registry.failures if f.may_provide("", name)), None)


def _overrides_declared(cls: Any) -> bool:

    own = getattr(cls.declared_hyperparameters, "__func__", None)
    return own is not getattr(LossStrategy.declared_hyperparameters, "__func__", None)


def _loss_hyperparameters(cls: Any) -> tuple[Any, ...]:
    """The loss's hyperparameters with its default params (static ones if it has none)."""
    try:
        params = cls.Params()
    except ValueError:  # required params (e.g. composite's terms): the static declaration
        return tuple(cls.hyperparameters)
    return tuple(cls.declared_hyperparameters(params))


def _sample_space(record: PluginRecord) -> list[SearchedParam]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = record.cls()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for _ in range(_SAMPLES):
        trial = study.ask()
        space.suggest(trial, EXAMPLE_INFO)
        for param, dist in trial.distributions.items():
            seen.setdefault(param, dist)
            counts[param] = counts.get(param, 0) + 1
        study.tell(trial, 0.0)
    out = []
    for param, dist in seen.items():
        conditional = " (conditional)" if counts[param] < _SAMPLES else ""
        type_name, domain = _distribution(dist)
        out.append(SearchedParam(f"student.{param}", type_name, domain + conditional, "-", ""))
    return out


def _distribution(dist: Any) -> tuple[str, str]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return "categorical", "{" + ", ".join(repr(c) for c in dist.choices) + "}"
    if isinstance(dist, IntDistribution | FloatDistribution):
        type_name = "int" if isinstance(dist, IntDistribution) else "float"
        scale = " log" if dist.log else ""
        return type_name, f"[{dist.low:g}, {dist.high:g}]{scale}"
    return type(dist).__name__, repr(dist)


def _type_name(annotation: Any) -> str:
    if inspect.isclass(annotation) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    text = str(annotation).replace("NoneType", "None")
    return re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)  # drop module paths


def _constraint(meta: Any) -> str:
    symbols = {
        "gt": ">",
        "ge": ">=",
        "lt": "<",
        "le": "<=",
        "min_length": "min length",
        "max_length": "max length",
        "multiple_of": "multiple of",
    }
    for attr, symbol in symbols.items():
        value = getattr(meta, attr, None)
        if value is not None:
            return f"{symbol} {value}"
    return ""
