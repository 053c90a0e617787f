"""Property: a randomly mutated config is a valid plan or a kdforge error, never a crash."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdforge.config import SearchConfig, validate_config
from kdforge.errors import KDForgeError
from kdforge.search.plan import plan_search

BASE: dict[str, Any] = {
    "name": "fuzz",
    "seed": 0,
    "output_dir": "runs",
    "dataset": {"name": "digits", "params": {"val_fraction": 0.15}},
    "teacher": {"name": "checkpoint", "params": {"path": "teacher.pt"}},
    "student": {"name": "mlp", "params": {"max_depth": 2, "max_width": 32}},
    "loss": {"name": "hinton_kd", "hparams": {"alpha": 0.5}},
    "search": {
        "num_trials": 3,
        "epochs": 4,
        "grace_period": 2,
        "lr": {"low": 1e-3, "high": 1e-2, "log": True},
    },
    "selection": {"rule": "accuracy"},
    "baseline": {"seeds": 1},
    "tracking": {"experiment": "x"},
    "export": {"tolerance": 1e-4},
}

values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 10**6),
        st.floats(allow_nan=True),
        st.text(max_size=12),
        st.sampled_from(["mlp", "cnn", "digits", "hinton_kd", "onnx", "tpe"]),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    return out


@st.composite
def mutated(draw) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(raw)
        path = draw(st.sampled_from(paths))
        parent = raw
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(values)
    return raw


# derandomize: CI sees the same 400 examples every run (no flaky failures); explore
# further locally with `pytest --hypothesis-seed=N`.
@settings(
    max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(mutated())
def test_mutated_config_is_plan_or_kdforge_error(raw: dict[str, Any]) -> None:
    try:
        config = validate_config(raw, SearchConfig)
        plan_search(config)
    except KDForgeError:
        pass
