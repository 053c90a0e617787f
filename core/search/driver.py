"""The search driver: config in, searched and distilled student out.

``run_search`` resolves the plugins, checks data against the teacher, computes the
teacher's outputs once, runs Ray Tune (Optuna TPE sampler + ASHA early stopping) over
the student space, the loss hyperparameters and the learning rate, logs every trial
to MLflow as a nested run, then hands the winner to :mod:`kdforge.search.finalize` for the
baseline, the export and the registry.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import yaml

from kdforge.cluster.ray_init import check_ray_address
from kdforge.config import Range, SearchConfig
from kdforge.data import DataSplits
from kdforge.errors import ConfigError, DataError
from kdforge.interfaces import DatasetPlugin, Exporter, PluginParams, SearchSpace, Teacher
from kdforge.plugin_host.manager import get_registry
from kdforge.plugin_host.resolve import instantiate, loss_hparams
from kdforge.report.leaderboard import TrialRow
from kdforge.search.initial_points import check_initial_points, initial_points_for_search
from kdforge.search.trial import TrialPayload
from kdforge.teacher.outputs import TeacherOutputs, training_inputs
from kdforge.tracking.store import check_tracking_uri, resolve_tracking_uri

__all__ = ["SearchPlan", "SearchResult", "plan_search", "resume_search", "run_search"]

# Ray Tune's automatic CSV/JSON/TensorBoard loggers cost time per result and duplicate
# what MLflow records; kdforge turns them off unless the user set the variable.
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Save the experiment state (which trials finished) at most 1 s apart instead of Ray's
# adaptive >= 10 s, so `kdforge resume` after a crash re-runs as little as possible.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")


@dataclass
class SearchPlan:
    """The validated, resolved pieces of a search (nothing has run yet)."""

    config: SearchConfig
    dataset: DatasetPlugin
    teacher: Teacher
    space: SearchSpace
    exporter: Exporter | None
    loss_settings: list
    tracking_uri: str
    address: str | None
    loss_params: PluginParams | None = None
    # The trials' shared data, built once by build_payload (trials and baseline use it).
    payload: TrialPayload | None = None
    # search.initial_points checked against the space and flattened to the sampler's
    # names, once the data info is known (initial_points_for_search).
    initial_points: list[dict[str, Any]] | None = None


@dataclass
class SearchResult:
    """What a finished search produced."""

    search_dir: Path
    rows: list[TrialRow]
    best: TrialRow | None
    summary: dict[str, Any] = field(default_factory=dict)
    parent_run_id: str | None = None


def plan_search(
    config: SearchConfig, *, tracking_uri: str | None = None, address: str | None = None
) -> SearchPlan:
    """Resolve every plugin and validate every parameter, without running anything.

    Raises:
        ConfigError / PluginError: naming the key or plugin at fault.
    """
    dataset = instantiate("dataset", config.dataset, "dataset")
    teacher = instantiate("teacher", config.teacher, "teacher")
    space = instantiate("search_space", config.student, "student")
    from kdforge.report.best_config import apply_fixed_architecture

    space = apply_fixed_architecture(space, config)  # student.fixed: one architecture
    loss_record = get_registry().get("loss", config.loss.name)
    from kdforge.plugin_host.resolve import validate_params

    loss_params = validate_params(loss_record, config.loss.params, "loss")
    settings = loss_hparams(config.loss)
    exporter = None
    if config.export.enabled:
        from kdforge.config import PluginRef

        exporter = instantiate(
            "exporter", PluginRef(name=config.export.exporter), "export.exporter"
        )
    plan = SearchPlan(
        config=config,
        dataset=dataset,
        teacher=teacher,
        space=space,
        exporter=exporter,
        loss_settings=settings,
        loss_params=loss_params,
        tracking_uri=resolve_tracking_uri(tracking_uri or config.tracking.uri),
        address=address or config.search.address,
    )
    # Student values need the data info; they are checked once the data is loaded.
    check_initial_points(plan)
    return plan


def check_data_against_teacher(splits: DataSplits, teacher: Teacher, teacher_name: str) -> None:
    """Fail before the search when data and teacher cannot work together.

    Raises:
        DataError: empty split, non-finite inputs, labels out of range, or a teacher
            built for another input shape or number of classes (both sides shown).
    """
    info = splits.info
    for name, split in splits.named_splits().items():
        if len(split) == 0 and name != "transfer":
            raise DataError(f"dataset {info.name!r}: the {name} split is empty")
        # Streamed (lazy) inputs are not read here: a full pass would cost an epoch.
        if (
            isinstance(split.x, torch.Tensor)
            and split.x.is_floating_point()
            and not bool(torch.isfinite(split.x).all())
        ):
            bad = int((~torch.isfinite(split.x)).flatten(1).any(1).sum())
            raise DataError(f"dataset {info.name!r}: {bad} {name} inputs contain NaN or inf")
        labeled = split.y[split.y >= 0]
        if bool((split.y < -1).any()):
            raise DataError(
                f"dataset {info.name!r}: the {name} split has labels below -1 "
                f"(lowest {int(split.y.min())}); labels are 0..{info.num_classes - 1}, or -1 "
                "for an unlabeled training row"
            )
        if name in ("val", "test") and len(labeled) != len(split.y):
            raise DataError(
                f"dataset {info.name!r}: {len(split.y) - len(labeled)} rows of the {name} split "
                "have no label (-1); validation and test rows must be labeled"
            )
        if len(labeled) and int(labeled.max()) >= info.num_classes:
            raise DataError(
                f"dataset {info.name!r}: {name} labels go up to {int(labeled.max())} but the "
                f"dataset declares {info.num_classes} classes"
            )
    expected_shape = teacher.expected_input_shape()
    if expected_shape is not None and tuple(expected_shape) != tuple(info.input_shape):
        raise DataError(
            f"teacher {teacher_name!r} expects inputs of shape {tuple(expected_shape)} but "
            f"dataset {info.name!r} gives {tuple(info.input_shape)}"
        )
    expected_classes = teacher.expected_num_classes()
    if expected_classes is not None and expected_classes != info.num_classes:
        raise DataError(
            f"teacher {teacher_name!r} predicts {expected_classes} classes but dataset "
            f"{info.name!r} has {info.num_classes}"
        )
    _probe_teacher(splits, teacher, teacher_name)


def _probe_teacher(splits: DataSplits, teacher: Teacher, teacher_name: str) -> None:
    """Run the teacher on two validation rows: catches what no declaration says."""
    from kdforge.batching import iter_batches

    info = splits.info
    try:
        _, sample = next(iter_batches(splits.val.x, 2))
    except Exception:  # an unreadable streamed row is reported by the dataset itself
        return
    try:
        output = teacher.predict(sample)
    except Exception as exc:
        raise DataError(
            f"teacher {teacher_name!r} cannot run on dataset {info.name!r}'s inputs "
            f"(shape {tuple(sample.shape[1:])}, dtype {sample.dtype}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
        ) from None
    logits = output.logits
    if logits is not None and (logits.ndim != 2 or logits.shape[-1] != info.num_classes):
        raise DataError(
            f"teacher {teacher_name!r} returns logits of shape {tuple(logits.shape[1:])} per "
            f"row but dataset {info.name!r} has {info.num_classes} classes"
        )


class _PrefixedTrial:
    """Optuna trial proxy that prefixes parameter names (``student/depth``)."""

    def __init__(self, trial: Any, prefix: str):
        self._trial = trial
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._trial, name)
        if name.startswith("suggest_"):

            def suggest(param: str, *args: Any, **kwargs: Any) -> Any:
                return attr(self._prefix + param, *args, **kwargs)

            return suggest
        return attr


class DefineByRun:
    """The define-by-run function OptunaSearch calls for every new trial.

    A module-level class (not a closure) so Ray can pickle it with the searcher's
    state for experiment checkpoints and resume.
    """

    def __init__(self, space: SearchSpace, info: Any, lr: Range, loss_settings: list) -> None:
        self.space = space
        self.info = info
        self.lr = lr
        self.loss_settings = loss_settings

    def __call__(self, trial: Any) -> dict[str, Any] | None:
        """Sample the student, the loss hyperparameters and the learning rate."""
        constants: dict[str, Any] = {}
        extra = self.space.suggest(_PrefixedTrial(trial, "student/"), self.info)  # type: ignore[arg-type]
        # Constants are returned with flat "student/<key>" names: a nested "student"
        # dict would replace the sampled "student/*" values when Ray unflattens them.
        for key, value in (extra or {}).items():
            constants[f"student/{key}"] = value
        fixed: dict[str, float] = {}
        for hp, setting in self.loss_settings:
            if isinstance(setting, Range):
                name = f"loss/{hp.name}"
                if hp.kind == "int":
                    trial.suggest_int(name, int(setting.low), int(setting.high), log=setting.log)
                else:
                    trial.suggest_float(name, setting.low, setting.high, log=setting.log)
            else:
                fixed[hp.name] = float(setting)
        for key, value in fixed.items():
            constants[f"loss/{key}"] = value
        trial.suggest_float("lr", self.lr.low, self.lr.high, log=self.lr.log)
        return constants or None


def make_define_by_run(plan: SearchPlan, info: Any) -> DefineByRun:
    """The define-by-run sampler function of ``plan``."""
    return DefineByRun(plan.space, info, plan.config.search.lr, plan.loss_settings)


def new_search_dir(config: SearchConfig) -> Path:
    """Create ``output_dir/name/<timestamp>`` and check it is writable."""
    root = Path(config.output_dir).resolve() / config.name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = root / stamp
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = root / f"{stamp}-{suffix}"
    try:
        folder.mkdir(parents=True)
        probe = folder / ".write-probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output_dir: cannot write search folder {folder}: {exc}") from None
    return folder


def run_search(
    config: SearchConfig,
    *,
    tracking_uri: str | None = None,
    address: str | None = None,
    emit: Callable[[str], None] = print,
) -> SearchResult:
    """Run a whole search: data, teacher outputs, Ray Tune, MLflow, baseline, export.

    Args:
        config: The validated search config.
        tracking_uri: Overrides ``tracking.uri``.
        address: Ray cluster address; overrides ``search.address``.
        emit: Where progress lines go.
    """
    plan = plan_search(config, tracking_uri=tracking_uri, address=address)
    check_tracking_uri(plan.tracking_uri)
    check_ray_address(plan.address)
    search_dir = new_search_dir(config)
    (search_dir / "config.yaml").write_text(
        yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )
    emit(f"kdforge search {config.name!r} -> {search_dir}")
    return _prepare_and_execute(plan, search_dir, emit, resume=False)


def resume_search(
    search_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    address: str | None = None,
    emit: Callable[[str], None] = print,
) -> SearchResult:
    """Continue a search whose driver died (or whose tracking server went away).

    Finished trials are kept and not re-run, unfinished ones start again, the MLflow
    parent run is continued, journaled tracking calls are sent, and the search ends
    as usual (leaderboard, baseline, export, registry).

    Args:
        search_dir: The search folder (``output_dir/NAME/TIMESTAMP``).
        tracking_uri: Overrides the URI the search used.
        address: Ray cluster address to join.
        emit: Where progress lines go.
    """
    from kdforge.config import load_search_config
    from kdforge.search.state import SearchState

    folder = Path(search_dir).resolve()
    state = SearchState.load(folder)
    config = load_search_config(folder / "config.yaml")
    plan = plan_search(config, tracking_uri=tracking_uri or state.tracking_uri, address=address)
    check_tracking_uri(plan.tracking_uri)
    check_ray_address(plan.address)
    emit(f"kdforge resume {config.name!r} <- {folder} (was {state.phase})")
    return _prepare_and_execute(plan, folder, emit, resume=True)


def _prepare_and_execute(
    plan: SearchPlan, search_dir: Path, emit: Callable[[str], None], resume: bool
) -> SearchResult:
    config = plan.config
    splits = plan.dataset.load(config.seed)
    plan.teacher.load()
    check_data_against_teacher(splits, plan.teacher, config.teacher.name)
    bind_teacher = getattr(plan.space, "bind_teacher", None)
    if callable(bind_teacher):
        # Optional space hook: e.g. `transformer` copies layers of a compatible teacher.
        bind_teacher(plan.teacher)
    # Before the teacher outputs, MLflow and Ray: a bad point must not cost any of them
    # (and the space suggests differently once it is bound to the teacher).
    initial_points_for_search(plan, splits.info)
    from kdforge.search.runner import SearchServices, execute_search

    # Ray and the MLflow experiment come up while the teacher's outputs are computed
    # (started only now, so bad data costs no Ray start).
    services = SearchServices(
        plan.tracking_uri, None if resume else config.tracking.experiment, plan.address
    )
    try:
        started = time.perf_counter()
        from kdforge.teacher.cache import teacher_outputs_for_search

        # Computed once per (teacher, data) and cached on disk; features only when the
        # loss reads them; the teacher runs online in the trials when inputs are augmented.
        outputs = teacher_outputs_for_search(plan, splits, emit)
        teacher_acc = outputs.accuracy(splits)
        emit(
            f"teacher {config.teacher.name}: {plan.teacher.num_parameters():,} params, "
            f"val_acc={teacher_acc['val']:.4f} test_acc={teacher_acc['test']:.4f} "
            f"(outputs ready in {time.perf_counter() - started:.1f}s)"
        )
        return execute_search(
            plan, splits, outputs, teacher_acc, search_dir, emit, services, resume=resume
        )
    finally:
        services.close()


def write_summary(search_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary.json`` in the search folder."""
    path = search_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    return path


def build_payload(plan: SearchPlan, splits: DataSplits, outputs: TeacherOutputs) -> TrialPayload:
    """The data every trial shares, as one object for Ray's object store.

    Built once per search and kept on ``plan.payload`` for the baseline runs.
    """
    if plan.payload is not None:
        return plan.payload
    loss_record = get_registry().get("loss", plan.config.loss.name)
    from kdforge.objectives.constraints import trial_objectives_for
    from kdforge.plugin_host.resolve import validate_params

    loss_params = plan.loss_params or validate_params(loss_record, plan.config.loss.params, "loss")
    train = training_inputs(splits)
    plan.payload = TrialPayload(
        info=splits.info,
        train_x=train.x,
        train_y=train.y,
        teacher_train_logits=outputs.train if outputs.has_logits else None,
        val_x=splits.val.x,
        val_y=splits.val.y,
        test_x=splits.test.x,
        test_y=splits.test.y,
        space=plan.space,
        loss_cls=loss_record.cls,
        loss_params=loss_params,
        epochs=plan.config.search.epochs,
        batch_size=plan.config.search.batch_size,
        weight_decay=plan.config.search.weight_decay,
        seed=plan.config.seed,
        threads=max(1, int(plan.config.search.cpus_per_trial)),
        gpus=plan.config.search.gpus_per_trial,
        precision=plan.config.search.precision,
        teacher_train_features=outputs.train_features,
        objectives=trial_objectives_for(plan.config),
        online_teacher=outputs.online_teacher,
    )
    return plan.payload


__all__ += [
    "build_payload",
    "check_data_against_teacher",
    "make_define_by_run",
    "write_summary",
]
