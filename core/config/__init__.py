"""Configuration files: YAML validated into typed objects (every key in ``docs/config.md``).

``schema`` holds the search and teacher configs and their sections; the self-contained
sections (objectives and constraints, quantization, the teacher cache) have a module
each; ``loading`` reads YAML and turns validation errors into one-line messages;
``docs`` renders ``docs/config.md``.
"""

from __future__ import annotations

from kdforge.config.loading import (
    format_validation_error,
    load_config,
    load_search_config,
    load_teacher_config,
    validate_config,
)
from kdforge.config.schema import (
    DEFAULT_TRACKING_URI,
    BaselineSettings,
    DatasetRef,
    ExportSettings,
    LossConfig,
    PluginRef,
    Range,
    SearchConfig,
    SearchSettings,
    SelectionSettings,
    StudentConfig,
    TeacherConfig,
    TeacherRef,
    TrackingSettings,
    resolve_tracking_uri,
)

__all__ = [
    "DEFAULT_TRACKING_URI",
    "BaselineSettings",
    "DatasetRef",
    "ExportSettings",
    "LossConfig",
    "PluginRef",
    "Range",
    "SearchConfig",
    "SearchSettings",
    "SelectionSettings",
    "StudentConfig",
    "TeacherConfig",
    "TeacherRef",
    "TrackingSettings",
    "format_validation_error",
    "load_config",
    "load_search_config",
    "load_teacher_config",
    "resolve_tracking_uri",
    "validate_config",
]
