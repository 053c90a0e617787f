"""Every built-in file dataset has a valid search and teacher example in examples/datasets/."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.config import PluginRef, load_search_config, load_teacher_config
from kdforge.plugin_host.manager import get_registry
from kdforge.plugin_host.resolve import instantiate

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "datasets"
KINDS = ["image_folder", "tabular", "text", "arrays", "hf_disk", "text_corpus"]


def test_one_example_pair_per_builtin_file_dataset() -> None:
    builtin = {
        r.name for r in get_registry().list("dataset") if r.cls.__module__.startswith("kdforge.")
    }
    # digits ships in scikit-learn; in_memory holds the Python API's objects, not files.
    assert set(KINDS) == builtin - {"digits", "in_memory"}
    names = {p.name for p in EXAMPLES.glob("*.yaml")}
    assert names == {f"{k}.yaml" for k in KINDS} | {f"{k}-teacher.yaml" for k in KINDS}


@pytest.mark.parametrize("kind", KINDS)
def test_examples_validate_with_their_plugins(kind: str) -> None:
    search = load_search_config(EXAMPLES / f"{kind}.yaml")
    teacher = load_teacher_config(EXAMPLES / f"{kind}-teacher.yaml")
    assert search.dataset.name == teacher.dataset.name == kind
    instantiate("dataset", search.dataset, "dataset")
    instantiate("dataset", teacher.dataset, "dataset")
    instantiate("search_space", search.student, "student")
    instantiate("search_space", PluginRef(name=teacher.architecture.name), "architecture")
    assert Path(search.teacher.params["path"]).name == Path(teacher.output).name
