"""Old import paths of modules that moved into concept packages (kept for one release).

Before the concept packages, ``core/`` was one flat folder: ``kdforge.plugin_manager``,
``kdforge.trainer``, ``kdforge.teacher_cache`` and so on. Importing such a path still
works and gives the module at its new place, with a :class:`DeprecationWarning` that
names the new path. Remove this module (and its finder) in the next release.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED_MODULES", "MovedModuleFinder", "install_moved_module_finder"]

#: Old module path -> the module that holds its public names now.
MOVED_MODULES: dict[str, str] = {
    "kdforge.plugin_manager": "kdforge.plugin_host.manager",
    "kdforge.plugin_registry": "kdforge.plugin_host.records",
    "kdforge.plugin_info": "kdforge.plugin_host.info",
    "kdforge.resolve": "kdforge.plugin_host.resolve",
    "kdforge.scaffold": "kdforge.plugin_host.scaffold",
    "kdforge.config_docs": "kdforge.config.docs",
    "kdforge.objective_settings": "kdforge.config.objective_settings",
    "kdforge.quantize_settings": "kdforge.config.quantize_settings",
    "kdforge.teacher_cache_settings": "kdforge.config.teacher_cache_settings",
    "kdforge.trainer": "kdforge.training.trainer",
    "kdforge.teacher_outputs": "kdforge.teacher.outputs",
    "kdforge.teacher_cache": "kdforge.teacher.cache",
    "kdforge.cached_rows": "kdforge.teacher.cached_rows",
    "kdforge.online_teacher": "kdforge.teacher.online",
    "kdforge.teacher_training": "kdforge.teacher.train_teacher",
    "kdforge.constraints": "kdforge.objectives.constraints",
    "kdforge.speedup": "kdforge.objectives.speedup",
    "kdforge.multiobjective": "kdforge.search.sampler",
    "kdforge.pareto": "kdforge.report.pareto",
    "kdforge.journal": "kdforge.tracking.journal",
    "kdforge.run_metadata": "kdforge.tracking.run_metadata",
    "kdforge.onnx_registry": "kdforge.tracking.registry",
    "kdforge.teacher_registry": "kdforge.tracking.registry",
    "kdforge.promote": "kdforge.tracking.promote",
    "kdforge.model_card": "kdforge.tracking.model_card",
    "kdforge.quantize": "kdforge.export.quantize",
    "kdforge.leaderboard": "kdforge.report.leaderboard",
    "kdforge.plots": "kdforge.report.plots",
    "kdforge.reporting": "kdforge.report.render",
    "kdforge.best_config": "kdforge.report.best_config",
    "kdforge.initial_points": "kdforge.search.initial_points",
    "kdforge.trial": "kdforge.search.trial",
    "kdforge.callbacks": "kdforge.search.callbacks",
    "kdforge.search_state": "kdforge.search.folder",
    "kdforge.ray_init": "kdforge.cluster.ray_init",
    "kdforge.serve": "kdforge.deploy.serve",
}


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module at its new place (the same module object)."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.new}; import it from there (the old path goes "
            "away in the next release)",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the new module is already imported."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED_MODULES` (asked only after the normal finders)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec for an old path, or None for every other name."""
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install_moved_module_finder() -> None:
    """Append the finder to ``sys.meta_path`` once per process."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
