"""The searcher: built quietly, so a search's output stays kdforge's own lines."""

from __future__ import annotations

import subprocess
import sys


def test_making_the_searcher_prints_no_optuna_log_line() -> None:
    code = (
        "from pathlib import Path\n"
        "from kdforge.config import SearchConfig\n"
        "from kdforge.data import DataInfo\n"
        "from kdforge.search.sampler import DefineByRun, make_searcher\n"
        "from kdforge.search_spaces.mlp import MLPSpace\n"
        "from tests.conftest import tiny_search_config\n"
        "config = SearchConfig.model_validate(tiny_search_config(Path('t.pt'), Path('/tmp')))\n"
        "info = DataInfo(name='d', input_shape=(4,), num_classes=3)\n"
        "searcher = make_searcher(config, DefineByRun(MLPSpace(), info, config.search.lr, []))\n"
        "assert searcher.suggest('t1') is not None\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert "A new study created" not in done.stderr
