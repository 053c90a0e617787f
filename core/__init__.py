"""kdforge: automatic knowledge distillation.

Bring a teacher and data; kdforge searches the smallest student that keeps the
teacher's accuracy (Ray Tune + Optuna), tracks everything in MLflow, and exports and
registers the winner as ONNX. Everything that varies between users is a plugin (see
``kdforge.hookspecs``).
"""

from __future__ import annotations

from kdforge.config import SearchConfig, TeacherConfig, load_search_config, load_teacher_config
from kdforge.data import UNLABELED, DataInfo, DataSplits, Split
from kdforge.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ExportError,
    KDForgeError,
    PluginError,
    SearchError,
    TrackingError,
)
from kdforge.hookspecs import Register, hookimpl, hookspec
from kdforge.interfaces import (
    DatasetPlugin,
    Exporter,
    ExportResult,
    HParam,
    LossNeeds,
    LossResult,
    LossStrategy,
    ModelOutput,
    PluginParams,
    SearchSpace,
    Teacher,
)
from kdforge.plugin_host.manager import get_registry
from kdforge.training.checkpoint import load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "UNLABELED",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DataInfo",
    "DataSplits",
    "DatasetPlugin",
    "ExportError",
    "ExportResult",
    "Exporter",
    "HParam",
    "KDForgeError",
    "LossNeeds",
    "LossResult",
    "LossStrategy",
    "ModelOutput",
    "PluginError",
    "PluginParams",
    "Register",
    "SearchConfig",
    "SearchError",
    "SearchSpace",
    "Split",
    "Teacher",
    "TeacherConfig",
    "TrackingError",
    "__version__",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load_checkpoint",
    "load_search_config",
    "load_teacher_config",
    "save_checkpoint",
]
