"""The private APIs of other libraries that kdforge still uses, checked to fail loudly.

Each one has no public equivalent (the comment at its use says why). If a library
release renames or removes one, these tests fail here, with its name, instead of
kdforge silently losing the behaviour it gives.
"""

from __future__ import annotations

import subprocess
import sys

import torch
from ray import tune


def test_atexit_runs_the_exit_handlers_early() -> None:
    """``kdforge.cli.run``: run the exit handlers, then skip the module teardown."""
    code = (
        "import atexit, os, sys\n"
        "atexit.register(lambda: print('handler ran', flush=True))\n"
        "atexit._run_exitfuncs()\n"
        "os._exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 3 and done.stdout.strip() == "handler ran", done.stderr


def test_a_restored_tuner_exposes_its_run_config() -> None:
    """``kdforge.search.tune``: a resumed search replaces the pickled callbacks."""
    tuner = tune.Tuner(lambda config: None)
    run_config = tuner._local_tuner.get_run_config()
    assert isinstance(run_config, tune.RunConfig)
    marker = tune.Callback()
    run_config.callbacks = [marker]
    run_config.stop = {"training_iteration": 1}
    again = tuner._local_tuner.get_run_config()
    assert again.callbacks == [marker] and again.stop == {"training_iteration": 1}


def test_optuna_search_keeps_its_optuna_trials() -> None:
    """``kdforge.search.sampler``: constraint values reach the Optuna trial of a Tune trial."""
    from kdforge.search.sampler import ConstrainedOptunaSearch

    def space(trial: object) -> None:
        trial.suggest_float("x", 0.0, 1.0)  # type: ignore[attr-defined]

    searcher = ConstrainedOptunaSearch(
        space=space, metric="val_acc", mode="max", limits={"params": 10.0}
    )
    assert searcher.suggest("t1") is not None
    optuna_trial = searcher._ot_trials["t1"]
    assert callable(optuna_trial.set_constraint)
    searcher.on_trial_complete("t1", {"val_acc": 0.5, "params": 20.0})
    (frozen,) = searcher._ot_study.get_trials()
    # params 20 against a limit of 10: value / limit - 1 = 1.0 (infeasible).
    constraints = {k: v for k, v in frozen.system_attrs.items() if k.endswith(":params")}
    assert list(constraints.values()) == [1.0]


def test_the_cpu_attention_kernel_has_a_name_to_count_it_by() -> None:
    """``kdforge.objectives.costs.count_macs`` counts CPU attention through this op."""
    assert hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
