"""The plan of a search: every plugin resolved and every setting checked, nothing run.

:func:`plan_search` turns a validated :class:`~kdforge.config.SearchConfig` into a
:class:`SearchPlan`. It creates the plugins (dataset, teacher, student space, loss,
exporters) and validates their parameters, so a bad name or parameter fails here with
its key path, before any data is loaded, Ray is started or MLflow is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdforge.config import PluginRef, Range, SearchConfig, resolve_tracking_uri
from kdforge.data import ACCURACY, LossNeeds, TaskMetric
from kdforge.interfaces import (
    DatasetPlugin,
    Exporter,
    LossStrategy,
    PluginParams,
    SearchSpace,
    Task,
    Teacher,
)
from kdforge.plugin_host.manager import get_registry
from kdforge.plugin_host.resolve import instantiate, loss_hparams, validate_params
from kdforge.report.best_config import apply_fixed_architecture
from kdforge.search.initial_points import LossSettings, check_initial_points

__all__ = ["LATENCY_EXPORTER", "SearchPlan", "plan_search", "resolve_loss", "with_space_lr"]

#: The exporter latency is measured with: latency is ONNX Runtime latency by definition.
LATENCY_EXPORTER = "onnx"


@dataclass(frozen=True)
class SearchPlan:
    """The validated, resolved pieces of a search (nothing has run yet).

    Attributes:
        config: The search config.
        dataset: The dataset plugin.
        teacher: The teacher plugin (not loaded yet).
        space: The student search space (wrapped when ``student.fixed`` is set).
        loss_cls: The loss plugin class (trials create it with sampled values).
        loss_params: The loss's validated parameters.
        loss_settings: Its hyperparameters, each fixed or searched over a range.
        loss_needs: What the loss reads from teacher and student.
        exporter: The exporter of the chosen student; None when export is off.
        latency_exporter: The exporter that latency is measured through.
        tracking_uri: The resolved MLflow tracking URI.
        address: The Ray cluster to join, or None for a local Ray.
        task: The task; from the config's ``task`` section, else decided by the data
            once it is loaded (:func:`kdforge.search.run.load_data` fills it in).
    """

    config: SearchConfig
    dataset: DatasetPlugin
    teacher: Teacher
    space: SearchSpace
    loss_cls: type[LossStrategy]
    loss_params: PluginParams
    loss_settings: LossSettings
    loss_needs: LossNeeds
    exporter: Exporter | None
    latency_exporter: Exporter
    tracking_uri: str
    address: str | None
    task: Task | None = None

    @property
    def metric(self) -> TaskMetric:
        """The task's selection metric (accuracy until the task is known)."""
        return self.task.selection_metric if self.task is not None else ACCURACY


def with_space_lr(config: SearchConfig, space: SearchSpace) -> SearchConfig:
    """``config`` with the space's ``default_lr`` range when ``search.lr`` is not set.

    Each space trains best in its own learning-rate range (docs/search_spaces.md); a
    config that sets ``search.lr`` keeps it.
    """
    if "lr" in config.search.model_fields_set or space.default_lr is None:
        return config
    low, high = space.default_lr
    search = config.search.model_copy(update={"lr": Range(low=low, high=high, log=True)})
    return config.model_copy(update={"search": search})


def resolve_loss(config: SearchConfig) -> tuple[type[LossStrategy], PluginParams, LossSettings]:
    """The loss class, its validated params and its hyperparameter settings.

    Raises:
        ConfigError, PluginError: naming the ``loss`` key at fault.
    """
    loss_record = get_registry().get("loss", config.loss.name)
    loss_cls: type[LossStrategy] = loss_record.cls
    params = validate_params(loss_record, config.loss.params, "loss")
    return loss_cls, params, loss_hparams(config.loss)


def plan_search(
    config: SearchConfig, *, tracking_uri: str | None = None, address: str | None = None
) -> SearchPlan:
    """Resolve every plugin and validate every parameter, without running anything.

    Args:
        config: The validated search config.
        tracking_uri: Overrides ``tracking.uri``.
        address: Ray cluster address; overrides ``search.address``.

    Raises:
        ConfigError, PluginError: naming the key or plugin at fault.
    """
    # In the config's order, so the first bad section is the one reported.
    dataset = instantiate("dataset", config.dataset, "dataset")
    task = instantiate("task", config.task, "task") if config.task is not None else None
    teacher = instantiate("teacher", config.teacher, "teacher")
    unwrapped = instantiate("search_space", config.student, "student")
    config = with_space_lr(config, unwrapped)
    space = apply_fixed_architecture(unwrapped, config)
    loss_cls, loss_params, loss_settings = resolve_loss(config)
    exporter: Exporter | None = None
    if config.export.enabled:
        exporter = instantiate(
            "exporter", PluginRef(name=config.export.exporter), "export.exporter"
        )
    plan = SearchPlan(
        config=config,
        dataset=dataset,
        teacher=teacher,
        space=space,  # wrapped when student.fixed gives one architecture
        loss_cls=loss_cls,
        loss_params=loss_params,
        loss_settings=loss_settings,
        loss_needs=loss_cls.needs(loss_params),
        exporter=exporter,
        latency_exporter=instantiate("exporter", PluginRef(name=LATENCY_EXPORTER), "latency"),
        tracking_uri=resolve_tracking_uri(tracking_uri or config.tracking.uri),
        address=address or config.search.address,
        task=task,
    )
    # Student values need the data info; they are checked once the data is loaded.
    check_initial_points(config, loss_settings)
    return plan
