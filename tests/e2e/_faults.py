"""Fault injection for end-to-end tests: a loss plugin that fails in the chosen way.

``python -m tests.e2e._faults ARGS`` runs the ``kdforge`` CLI with the ``fault_test``
loss registered (pickled by value, so Ray workers need no install); its ``fault``
parameter picks the failure, inside the Ray worker that trains the trial.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field

from kdforge.interfaces import LossResult, ModelOutput, PluginParams
from kdforge.plugins.losses.hinton_kd import HintonKD


class FaultParams(PluginParams):
    """Which fault: none, nan (every loss), enospc (a write fails: disk full),
    die (the worker exits, every time), die_once (only while ``marker`` is absent)."""

    fault: Literal["none", "nan", "enospc", "die", "die_once"] = "none"
    marker: str = Field("", description="File that die_once creates before dying.")


class FaultLoss(HintonKD):
    """Hinton KD that fails as ``params.fault`` says."""

    name = "fault_test"
    Params = FaultParams

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        params = self.params
        assert isinstance(params, FaultParams)
        if params.fault == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/tmp/kdforge-fault")
        if params.fault == "die" or (
            params.fault == "die_once" and not Path(params.marker).exists()
        ):
            if params.marker:
                Path(params.marker).touch()
            os._exit(1)
        result = super().__call__(student, teacher, labels)
        if params.fault == "nan":
            return LossResult(result.total * float("nan"), result.parts)
        return result


def register() -> None:
    """Add ``fault_test`` to this process's plugin registry (and pickle it by value)."""
    import ray.cloudpickle

    from kdforge.plugin_host.manager import PluginRecord, get_registry

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    get_registry().add(PluginRecord("loss", "fault_test", FaultLoss, "tests", "0"))


if __name__ == "__main__":
    register()
    from kdforge.cli import main

    sys.exit(main(sys.argv[1:]))
