"""The regression and multilabel table examples validate, load and fit their task."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdforge.config import PluginRef, load_search_config, load_teacher_config
from kdforge.plugin_host.resolve import instantiate

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("folder", "task", "names"),
    [
        ("tabular-regression", "regression", ("price", "rent")),
        ("tabular-multilabel", "multilabel", ("overheat", "leak", "wear")),
    ],
)
def test_example_configs_load_their_table(
    folder: str, task: str, names: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the configs' paths are relative to the repository root
    search = load_search_config(ROOT / "examples" / folder / "search.yaml")
    teacher = load_teacher_config(ROOT / "examples" / folder / "teacher.yaml")
    dataset = instantiate("dataset", search.dataset, "dataset")
    # Teacher and search must split and encode the table the same way.
    assert dataset.params == instantiate("dataset", teacher.dataset, "dataset").params
    assert Path(search.teacher.params["path"]).name == Path(teacher.output).name
    instantiate("search_space", search.student, "student")
    splits = dataset.load(search.seed)
    assert splits.info.task == task and splits.info.class_names == names
    assert splits.transfer is not None or task == "multilabel"
    instantiate("task", PluginRef(name=task), "task").check(splits)
    assert (ROOT / search.dataset.params["path"]).stat().st_size < 50_000  # kept small
