"""The best config of a search: a search config that trains the chosen student again.

``best_config.yaml`` is the search's own config with everything the sampler chose
fixed: ``student.fixed`` holds the chosen architecture, ``loss.hparams`` its loss
hyperparameters as numbers, ``search.lr`` a range with ``low == high``, and
``search.num_trials: 1``. ``kdforge search best_config.yaml`` (run from the same
directory, since paths stay as written) trains, exports and registers that student
again; the registry step follows ``export.promote`` like any search.

:class:`FixedArchitecture` is the search-space wrapper behind ``student.fixed``: its
``suggest`` samples nothing and returns the fixed architecture.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from kdforge.config import SearchConfig, validate_config
from kdforge.errors import ConfigError
from kdforge.interfaces import SearchSpace, Teacher

if TYPE_CHECKING:
    from torch import nn

    from kdforge.data import DataInfo, DataSplits
    from kdforge.report.leaderboard import TrialRow

__all__ = [
    "FixedArchitecture",
    "apply_fixed_architecture",
    "best_search_config",
    "write_best_config",
]


class FixedArchitecture(SearchSpace):
    """A search space reduced to one architecture of another space.

    Args:
        inner: The configured search space (it builds the model).
        arch: The architecture, as ``inner.build`` takes it.
    """

    def __init__(self, inner: SearchSpace, arch: dict[str, Any]) -> None:
        super().__init__(inner.params)
        self.inner = inner
        self.arch = dict(arch)
        self._checked = False
        self._mirror()

    def _mirror(self) -> None:
        # What the host asks of a space is the wrapped space's, which may settle it only
        # once bound (hf_lm: causal or not by the teacher's family).
        self.per_position = self.inner.per_position
        self.causal = self.inner.causal
        self.needs_dense_teacher = self.inner.needs_dense_teacher

    def suggest(self, trial: Any, info: DataInfo) -> dict[str, Any] | None:
        """Sample nothing; return the fixed architecture (checked once).

        Raises:
            ConfigError: the space cannot build the fixed architecture.
        """
        if not self._checked:
            self.check(info)
        return dict(self.arch)

    def bind_teacher(self, teacher: Teacher | None) -> None:
        """Bind the teacher to the wrapped space (one that copies or cuts the teacher needs it)."""
        self.inner.bind_teacher(teacher)
        self._mirror()

    def bind_data(self, splits: DataSplits) -> None:
        """Show the data to the wrapped space (hf_lm: the corpus vocabulary, calibration)."""
        self.inner.bind_data(splits)
        self._mirror()

    def build(self, arch: dict[str, Any], info: DataInfo) -> nn.Module:
        """Build with the wrapped space."""
        return self.inner.build(arch, info)

    def feature_names(self, arch: dict[str, Any], info: DataInfo) -> list[str]:
        """The wrapped space's feature names."""
        return self.inner.feature_names(arch, info)

    def check(self, info: DataInfo) -> None:
        """Build the fixed architecture once, turning a failure into a ConfigError."""
        try:
            self.inner.build(dict(self.arch), info)
        except Exception as exc:
            raise ConfigError(
                f"student.fixed: search space {self.inner.name!r} cannot build "
                f"{self.arch}: {type(exc).__name__}: {exc}",
                hint="give every value the space samples (see a trial's params in MLflow "
                "or the student.* columns of leaderboard.csv)",
            ) from None
        self._checked = True

    def __getattr__(self, name: str) -> Any:
        # Methods a space adds beyond the interface behave as the wrapped space's.
        if name in ("inner", "arch", "_checked") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def apply_fixed_architecture(space: SearchSpace, config: SearchConfig) -> SearchSpace:
    """``space`` itself, or wrapped in :class:`FixedArchitecture` when ``student.fixed`` is set."""
    fixed = getattr(config.student, "fixed", None)
    if fixed is None:
        return space
    if not fixed:
        raise ConfigError(
            "student.fixed: empty architecture",
            hint="remove student.fixed to search, or give the values of one architecture",
        )
    return FixedArchitecture(space, fixed)


def best_search_config(config: SearchConfig, best: TrialRow) -> dict[str, Any]:
    """The raw search config that trains ``best`` again (see module docstring).

    Raises:
        ConfigError: ``best`` has no learning rate (it did not come from a search).
    """
    if best.lr is None:
        raise ConfigError(f"trial {best.number} has no learning rate; cannot write its config")
    raw = config.model_dump(mode="json")
    raw["student"]["fixed"] = dict(best.arch)
    raw["loss"]["hparams"] = {k: float(v) for k, v in best.loss_hparams.items()}
    search = raw["search"]
    search["num_trials"] = 1
    search["initial_points"] = []  # the chosen trial is fixed: nothing to seed
    search["time_budget_s"] = None
    search["lr"] = {"low": float(best.lr), "high": float(best.lr), "log": False}
    # A re-run must load: the exact values come from the model, so validate them here.
    validate_config(raw, SearchConfig, source="best_config.yaml")
    return raw


def write_best_config(
    config: SearchConfig, best: TrialRow, path: Path, *, search_dir: Path | None = None
) -> Path:
    """Write ``best_config.yaml`` with a header saying where it came from."""
    raw = best_search_config(config, best)
    origin = f" of {search_dir}" if search_dir is not None else ""
    header = (
        f"# Trains trial {best.number:03d}{origin} again "
        f"(val_acc={best.val_acc}, params={best.params}).\n"
        "# Run it from the directory the search ran in: kdforge search best_config.yaml\n"
    )
    path.write_text(header + yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path
