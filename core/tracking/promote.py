"""Moving a registry alias (``champion``) to a model version, always or only if better.

``always`` points the alias at the new version. ``if_better`` first evaluates the new
version and the alias's current version on the same test split, both as the registered
ONNX models run by onnxruntime, and moves the alias only when the new one is strictly
more accurate (a tie keeps the current champion). A current version that cannot run on
this split (another input shape, no ONNX flavour) cannot be compared and loses, and
the reason says so. The outcome is a :class:`Promotion`, which the search report and
``kdforge promote`` print, and which is also kept as tags on the new version.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from kdforge.batching import iter_batches
from kdforge.config import DatasetRef, PluginRef, load_search_config, resolve_tracking_uri
from kdforge.data import Split
from kdforge.errors import ConfigError, TrackingError
from kdforge.interfaces import Task
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugin_host.split_record import count_seen, ref_record, row_hashes, same_split
from kdforge.tracking.registry import fetch_onnx_model
from kdforge.tracking.store import check_tracking_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# MLflow (~1.5 s to import) and onnxruntime are imported inside the functions that use
# them: a search imports this module before it needs either.

__all__ = [
    "Promotion",
    "alias_version",
    "latest_version",
    "onnx_test_accuracy",
    "promote_target",
    "promote_version",
]

Policy = Literal["always", "if_better"]


@dataclass
class Promotion:
    """What happened to an alias when a version was offered to it.

    Attributes:
        name: Registered model name.
        alias: The alias (e.g. ``champion``).
        policy: ``always`` or ``if_better``.
        candidate_version: The version offered.
        previous_version: The alias's version before, or None if it was unset.
        promoted: Whether the alias now points at the candidate.
        candidate_test_acc: The candidate's test accuracy (``if_better`` only).
        previous_test_acc: The previous version's test accuracy (``if_better`` only).
        reason: One sentence on why.
    """

    name: str
    alias: str
    policy: str
    candidate_version: str
    previous_version: str | None
    promoted: bool
    candidate_test_acc: float | None = None
    previous_test_acc: float | None = None
    reason: str = ""

    @property
    def champion_version(self) -> str | None:
        """The version the alias points at now."""
        return self.candidate_version if self.promoted else self.previous_version

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for summary.json), with ``champion_version``."""
        out = asdict(self)
        out["champion_version"] = self.champion_version
        return out

    def line(self) -> str:
        """One line for the terminal and the report."""
        head = f"{self.name} version {self.candidate_version}"
        if self.promoted:
            return f"{head} is now @{self.alias} ({self.policy}): {self.reason}"
        return (
            f"{head} registered; @{self.alias} stays on version {self.previous_version} "
            f"({self.policy}): {self.reason}"
        )


def _client(client: MlflowClient | None) -> MlflowClient:
    if client is not None:
        return client
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def alias_version(name: str, alias: str, client: MlflowClient | None = None) -> str | None:
    """The version ``alias`` points at, or None when the alias (or model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(client).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def latest_version(name: str, client: MlflowClient | None = None) -> str:
    """The highest version number of registered model ``name``.

    Raises:
        TrackingError: the model does not exist or has no versions.
    """
    from mlflow.exceptions import MlflowException

    try:
        versions = _client(client).search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        raise TrackingError(f"cannot list versions of registered model {name!r}: {exc}") from None
    if not versions:
        raise TrackingError(
            f"registered model {name!r} has no versions",
            hint="check the name in the MLflow UI (Models), or pass --tracking-uri",
        )
    return str(max(int(v.version) for v in versions))


def onnx_test_accuracy(
    model_uri: str, test: Split, batch_size: int = 512, task: Task | None = None
) -> float:
    """Accuracy (the ``task``'s metric) of a registered ONNX model on ``test``.

    The model is downloaded from the registry and run by onnxruntime on the CPU; its
    first output must be the logits (a task's outputs, in the data's units: the task
    brings them to the units ``test`` is prepared in before it scores them).

    Raises:
        TrackingError: the model cannot be fetched, or does not run on these inputs.
    """
    import onnxruntime as ort

    model = _quiet_fetch(model_uri)
    session = ort.InferenceSession(model.onnx_bytes, providers=["CPUExecutionProvider"])
    dtype = np.dtype(model.input_dtype)
    labels = test.y.detach().cpu().numpy()
    outputs: list[np.ndarray] = []
    try:
        for _, batch in iter_batches(test.x, batch_size):
            x = batch.detach().cpu().numpy().astype(dtype, copy=False)
            outputs.append(np.asarray(session.run(None, {model.input_name: x})[0]))
    except Exception as exc:  # onnxruntime raises its own types for shape/type errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"{model_uri} does not run on this test split: {first}") from None
    logits = np.concatenate(outputs) if outputs else np.empty((0,))
    if task is not None:
        if not bool(task.labeled(test.y).any()):
            raise ConfigError("the test split has no labeled rows; cannot compare models")
        prepared = task.prepare_outputs(torch.from_numpy(logits).float())
        return task.metrics(prepared, test.y)[task.metric]
    keep = labels >= 0
    if not keep.any():
        raise ConfigError("the test split has no labeled rows; cannot compare models")
    return float((logits.argmax(axis=1)[keep] == labels[keep]).mean())


def _quiet_fetch(model_uri: str) -> Any:
    """``fetch_onnx_model`` without MLflow's download progress bars in the search output."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        return fetch_onnx_model(model_uri)
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def promote_version(
    name: str,
    version: str,
    *,
    alias: str = "champion",
    policy: Policy = "always",
    test: Split | None = None,
    client: MlflowClient | None = None,
    test_split: dict[str, Any] | None = None,
    task: Task | None = None,
) -> Promotion:
    """Offer ``version`` of ``name`` to ``alias`` under ``policy``; move it if it wins.

    Args:
        name: Registered model name.
        version: The candidate version.
        alias: The alias to move.
        policy: ``always``, or ``if_better`` (needs ``test``).
        test: The test split both versions are evaluated on (``if_better``).
        client: An MLflow client (default: one for the current tracking URI).
        test_split: The split record ``test`` comes from
            (:func:`kdforge.plugin_host.split_record.ref_record`): rows of ``test`` that a
            version trained on (it records another split, in its ``kdforge.split``
            tag) are left out, so both are compared on rows neither trained on.
        task: The task whose metric compares the versions, in its direction (None:
            accuracy); ``test`` is in the form its ``prepare`` gave.

    Returns:
        The :class:`Promotion`; the candidate version also gets the tags
        ``kdforge.promotion`` (promoted or not) and ``kdforge.promotion_reason``.

    Raises:
        ConfigError: ``if_better`` without a test split.
        TrackingError: the candidate cannot be evaluated or the registry fails.
    """
    mlflow_client = _client(client)
    version = str(version)
    previous = alias_version(name, alias, mlflow_client)
    result = Promotion(name, alias, policy, version, previous, promoted=True)
    if previous == version:
        result.reason = f"it already was @{alias}"
    elif previous is None:
        result.reason = f"{name} had no @{alias} yet"
    elif policy == "always":
        result.reason = f"policy 'always' (replaces version {previous})"
    else:
        if test is None:
            raise ConfigError(
                "promote 'if_better' needs the test split to compare on",
                hint="pass the search's config (kdforge promote --if-better --config ...)",
            )
        _compare(result, test, test_split, mlflow_client, task)
    if result.promoted and previous != version:
        mlflow_client.set_registered_model_alias(name, alias, version)
    mlflow_client.set_model_version_tag(
        name, version, "kdforge.promotion", "promoted" if result.promoted else "not promoted"
    )
    mlflow_client.set_model_version_tag(
        name, version, "kdforge.promotion_reason", result.reason[:4000]
    )
    return result


def _compare(
    result: Promotion,
    test: Split,
    test_split: dict[str, Any] | None,
    client: MlflowClient,
    task: Task | None = None,
) -> None:
    """Fill in both scores and the decision of an ``if_better`` promotion."""
    versions = [result.candidate_version, str(result.previous_version)]
    test, note = _rows_neither_trained_on(result.name, versions, test, test_split, client)
    candidate = onnx_test_accuracy(
        f"models:/{result.name}/{result.candidate_version}", test, task=task
    )
    result.candidate_test_acc = candidate
    try:
        current = onnx_test_accuracy(
            f"models:/{result.name}/{result.previous_version}", test, task=task
        )
    except TrackingError as exc:
        result.reason = (
            f"the current @{result.alias} (version {result.previous_version}) cannot be "
            f"evaluated on this test split ({exc}); the new version replaces it"
        )
        return
    result.previous_test_acc = current
    result.promoted = task.better(candidate, current) if task is not None else candidate > current
    relation = ">" if candidate > current else ("=" if candidate == current else "<")
    outcome = (
        f"new version {result.candidate_version} wins"
        if result.promoted
        else f"version {result.previous_version} keeps @{result.alias}"
    )
    measure = "accuracy" if task is None or task.metric == "acc" else task.metric
    result.reason = (
        f"test {measure} {candidate:.4f} (v{result.candidate_version}) {relation} {current:.4f} "
        f"(v{result.previous_version}) on the same {len(test)} test rows{note}: {outcome}"
    )


def _version_split(name: str, version: str, client: MlflowClient) -> dict[str, Any] | None:
    """The split record a model version was trained on (its ``kdforge.split`` tag)."""
    tags = client.get_model_version(name, version).tags or {}
    try:
        record = json.loads(tags.get("kdforge.split", ""))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _rows_neither_trained_on(
    name: str,
    versions: list[str],
    test: Split,
    test_split: dict[str, Any] | None,
    client: MlflowClient,
) -> tuple[Split, str]:
    """``test`` without the rows either version trained on, and a note saying so.

    A version that records the same split as ``test`` never saw its test rows; one
    that records another split of the same dataset is re-split with its own seed and
    its training rows are dropped (matched by their inputs).

    Raises:
        ConfigError: no test row is left.
    """
    if test_split is None:
        return test, ""
    keep = np.ones(len(test), dtype=bool)
    dropped: list[str] = []
    unknown: list[str] = []
    for version in versions:
        record = _version_split(name, version, client)
        if record is None:
            unknown.append(f"v{version}")
            continue
        if same_split(record, test_split) or record.get("dataset") != test_split.get("dataset"):
            continue
        ref = DatasetRef(
            name=str(record["dataset"]),
            params=dict(record.get("params") or {}),
            split_seed=int(record["split_seed"]),
        )
        train = instantiate("dataset", ref, "dataset").load(ref.split_seed).train
        seen = count_seen(test.x, row_hashes(train.x))
        dropped.append(f"{int((seen & keep).sum())} in v{version}'s training split")
        keep &= ~seen
    note = ""
    if dropped:
        if not keep.any():
            raise ConfigError(
                f"every test row was in the training split of a version of {name!r} "
                f"({', '.join(dropped)}); the versions cannot be compared fairly",
                hint="compare versions trained with the same dataset.split_seed",
            )
        index = torch.from_numpy(np.flatnonzero(keep))
        test = Split(_take(test.x, index), test.y[index])
        note = f" neither version trained on (left out: {', '.join(dropped)})"
    if unknown:
        note += f" ({', '.join(unknown)} records no split: it may have trained on some)"
    return test, note


def _take(x: Any, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` of in-memory or streamed inputs, as a tensor."""
    if isinstance(x, torch.Tensor):
        return x[index]
    parts = [batch for _, batch in iter_batches(x, 512)]
    return torch.cat(parts)[index]


def promote_target(
    target: str,
    *,
    version: str | None = None,
    alias: str = "champion",
    if_better: bool = False,
    config_path: str | None = None,
    tracking_uri: str | None = None,
    emit: Callable[[str], None] = print,
) -> Promotion:
    """``kdforge promote``: move ``alias`` of a registered student.

    Given a search folder, the version that search registered is offered; given a
    registered model name, ``version`` or the latest one. With ``if_better`` the alias
    moves only if the version beats the alias's current one on the test split of the
    search's dataset (``config_path``, or the folder's ``config.yaml``).

    Returns:
        The :class:`Promotion`.

    Raises:
        ConfigError: a folder without ``summary.json``, or ``--if-better`` without a
            config to take the test split from.
        TrackingError: the registry or the model cannot be reached.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    folder = Path(target)
    summary: dict[str, Any] = {}
    if folder.is_dir():
        summary_file = folder / "summary.json"
        if not summary_file.is_file():
            raise ConfigError(
                f"{folder} has no summary.json: the search did not register a student",
                hint="pass a finished search folder, or a registered model name with --version",
            )
        summary = json.loads(summary_file.read_text())
        if not summary.get("registered_model_name"):
            raise ConfigError(f"{summary_file} names no registered model (export was disabled?)")
        name = str(summary["registered_model_name"])
        version = version or str(summary.get("registered_model_version") or "") or None
        config_path = config_path or str(folder / "config.yaml")
    else:
        name = target
    config = load_search_config(config_path) if config_path else None
    uri = resolve_tracking_uri(
        tracking_uri or summary.get("tracking_uri") or (config.tracking.uri if config else None)
    )
    check_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    test = None
    test_split = None
    task = None
    if if_better:
        if config is None:
            raise ConfigError(
                "--if-better needs the search config whose test split both versions run on",
                hint="pass --config SEARCH.yaml, or give a search folder instead of a model name",
            )
        dataset = instantiate("dataset", config.dataset, "dataset")
        splits = dataset.load(config.dataset.split_seed)
        # Scored by the task's metric, its targets prepared as the search prepared them.
        task = instantiate("task", config.task or PluginRef(name=splits.info.task), "task")
        task.check(splits)
        test = task.prepare(splits).test
        test_split = ref_record(config.dataset)
    chosen = str(version) if version else latest_version(name)
    result = promote_version(
        name,
        chosen,
        alias=alias,
        policy="if_better" if if_better else "always",
        test=test,
        test_split=test_split,
        task=task,
    )
    if result.promoted:
        client = MlflowClient()
        text = client.get_model_version(name, chosen).description or ""
        client.update_registered_model(name, description=f"@{alias}: version {chosen}.\n\n{text}")
    emit(result.line())
    return result
