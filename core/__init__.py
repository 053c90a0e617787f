"""kdforge: automatic knowledge distillation.

Bring a teacher and data; kdforge searches the smallest student that keeps the
teacher's accuracy (Ray Tune + Optuna), tracks everything in MLflow, and exports and
registers the winner as ONNX. Everything that varies between users is a plugin (see
``kdforge.hookspecs``).

This module is the public face: every name a plugin author or a script needs is
importable from ``kdforge`` itself (``from kdforge import DatasetPlugin, apply_storage``).
The face modules ``kdforge.errors``, ``kdforge.data``, ``kdforge.interfaces``,
``kdforge.hookspecs``, ``kdforge.features``, ``kdforge.batching``, ``kdforge.checkpoint``
and ``kdforge.testing`` may be imported directly too; everything else is internal.

The Python API (``kdforge.distill``, ``kdforge.resume``, ``kdforge.load_student``,
``kdforge.DistillResult``) drives a search, so it sits above the search in the layers
(``kdforge.api``): it is imported on first use by the module ``__getattr__`` below, so
plugins, which import this face, never load Ray, Optuna or MLflow through it.
"""

from __future__ import annotations

import importlib
from typing import Any

from kdforge._moved import install_moved_module_finder
from kdforge._version import __version__
from kdforge.batching import apply_storage, concat, iter_batches
from kdforge.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from kdforge.config import (
    PluginRef,
    Range,
    SearchConfig,
    TeacherConfig,
    load_search_config,
    load_teacher_config,
    resolve_tracking_uri,
)
from kdforge.data import (
    UNLABELED,
    DataInfo,
    DataSplits,
    ExportResult,
    HParam,
    Inputs,
    LazyInputs,
    LossNeeds,
    LossResult,
    ModelOutput,
    Split,
    TopKLogits,
    VocabularyTrim,
    is_token_dtype,
)
from kdforge.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DiskFullError,
    ExportError,
    KDForgeError,
    PluginError,
    SearchError,
    TrackingError,
)
from kdforge.features import FeatureTap, match_layers, model_feature_names
from kdforge.hookspecs import Register, hookimpl, hookspec
from kdforge.interfaces import (
    DatasetPlugin,
    Exporter,
    LossStrategy,
    PluginParams,
    SearchSpace,
    Task,
    Teacher,
)
from kdforge.plugin_host.manager import PluginRecord, get_registry, reset_registry
from kdforge.plugin_host.resolve import build_checkpoint_model, instantiate, validate_params

install_moved_module_finder()

#: Names of the Python API, loaded from ``kdforge.api`` when first read.
_API_NAMES = ("DistillResult", "distill", "load_student", "resume")


def __getattr__(name: str) -> Any:
    """``kdforge.distill`` and the rest of the Python API, imported on first use."""
    if name in _API_NAMES:
        value = getattr(importlib.import_module("kdforge.api"), name)
        globals()[name] = value  # later reads skip this hook
        return value
    raise AttributeError(f"module 'kdforge' has no attribute {name!r}")


__all__ = [
    "UNLABELED",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataInfo",
    "DataSplits",
    "DatasetPlugin",
    "DiskFullError",
    "DistillResult",
    "ExportError",
    "ExportResult",
    "Exporter",
    "FeatureTap",
    "HParam",
    "Inputs",
    "KDForgeError",
    "LazyInputs",
    "LossNeeds",
    "LossResult",
    "LossStrategy",
    "ModelOutput",
    "PluginError",
    "PluginParams",
    "PluginRecord",
    "PluginRef",
    "Range",
    "Register",
    "SearchConfig",
    "SearchError",
    "SearchSpace",
    "Split",
    "Task",
    "Teacher",
    "TeacherConfig",
    "TopKLogits",
    "TrackingError",
    "VocabularyTrim",
    "__version__",
    "apply_storage",
    "build_checkpoint_model",
    "checkpoint_info",
    "concat",
    "distill",
    "get_registry",
    "hookimpl",
    "hookspec",
    "instantiate",
    "is_token_dtype",
    "iter_batches",
    "load_checkpoint",
    "load_search_config",
    "load_student",
    "load_teacher_config",
    "match_layers",
    "model_feature_names",
    "reset_registry",
    "resolve_tracking_uri",
    "resume",
    "save_checkpoint",
    "validate_params",
]
