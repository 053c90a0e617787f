"""Registry promotion: ``always`` and ``if_better`` on a real SQLite registry.

The models are small ONNX graphs (flatten + linear layer) built directly: a logistic
regression fitted on digits (accurate) and a random one (about chance), so each test
knows which version must win, and onnxruntime evaluates both from the registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from kdforge.errors import ConfigError

NAME = "promote-test"


def _linear_onnx(path: Path, weight: np.ndarray, bias: np.ndarray, in_shape: tuple) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
        ],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *in_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(bias)])],
        initializer=[
            numpy_helper.from_array(weight.astype(np.float32), "W"),
            numpy_helper.from_array(bias.astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def digits():
    from kdforge.plugins.datasets.digits import Digits

    return Digits().load(0)


@pytest.fixture(scope="module")
def models(digits, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """ONNX files: ``good`` (logistic regression), ``bad`` (random), ``other`` (10 inputs)."""
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("onnx")
    x = digits.train.x.flatten(1).numpy()
    fit = LogisticRegression(max_iter=300).fit(x, digits.train.y.numpy())
    rng = np.random.default_rng(0)
    shape = tuple(digits.info.input_shape)
    return {
        "good": _linear_onnx(folder / "good.onnx", fit.coef_, fit.intercept_, shape),
        "bad": _linear_onnx(folder / "bad.onnx", rng.normal(size=(10, 64)), np.zeros(10), shape),
        "other": _linear_onnx(
            folder / "other.onnx", rng.normal(size=(10, 10)), np.zeros(10), (10,)
        ),
    }


@pytest.fixture(scope="module")
def store(models, digits, tmp_path_factory: pytest.TempPathFactory):
    """One SQLite registry for the module, each ONNX model logged once: ``(uri, sources)``.

    Creating a store and logging a model take seconds; registering a logged model
    under another name is one database row, so every test gets its own model name.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from kdforge.tracking.registry import register_onnx
    from kdforge.tracking.store import setup_experiment

    uri = f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"
    setup_experiment(uri, "promote")
    sources = {}
    for kind, path in models.items():
        in_shape = (10,) if kind == "other" else tuple(digits.info.input_shape)
        with mlflow.start_run():
            version = register_onnx(
                path, name=f"source-{kind}", example=np.zeros((2, *in_shape), np.float32)
            )
        sources[kind] = MlflowClient(uri).get_model_version(f"source-{kind}", version).source
    yield uri, sources
    mlflow.set_tracking_uri(None)


@pytest.fixture
def registry(store, request):
    """``(uri, register, name)``: ``register(kind)`` adds a version of ``kind`` under ``name``."""
    import mlflow

    uri, sources = store
    mlflow.set_tracking_uri(uri)
    name = f"{NAME}-{request.node.name.removeprefix('test_')}"[:60]

    def register(kind: str) -> str:
        return str(mlflow.register_model(sources[kind], name).version)

    return uri, register, name


def _champion(uri: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    return str(MlflowClient(uri).get_model_version_by_alias(name, "champion").version)


def test_onnx_test_accuracy_tells_good_from_bad(registry, models, digits) -> None:
    from kdforge.tracking.promote import onnx_test_accuracy

    _, register, name = registry
    good, bad = register("good"), register("bad")
    assert onnx_test_accuracy(f"models:/{name}/{good}", digits.test) > 0.9
    assert onnx_test_accuracy(f"models:/{name}/{bad}", digits.test) < 0.5


def test_if_better_keeps_a_better_champion(registry, models, digits) -> None:
    from mlflow.tracking import MlflowClient

    from kdforge.tracking.promote import promote_version

    uri, register, name = registry
    first = promote_version(name, register("good"), policy="if_better", test=digits.test)
    assert first.promoted and "no @champion" in first.reason
    bad = register("bad")
    result = promote_version(name, bad, policy="if_better", test=digits.test)
    assert not result.promoted
    assert result.previous_version == "1" and result.champion_version == "1"
    assert result.candidate_test_acc is not None and result.previous_test_acc is not None
    assert result.candidate_test_acc < result.previous_test_acc
    assert (
        "version 1 keeps @champion" in result.reason
        and f"{len(digits.test)} test rows" in result.reason
    )
    assert _champion(uri, name) == "1"
    tags = MlflowClient(uri).get_model_version(name, bad).tags
    assert tags["kdforge.promotion"] == "not promoted"
    assert "keeps @champion" in tags["kdforge.promotion_reason"]


def test_if_better_promotes_a_better_candidate(registry, models, digits) -> None:
    from kdforge.tracking.promote import promote_version

    uri, register, name = registry
    promote_version(name, register("bad"), test=digits.test)
    good = register("good")
    result = promote_version(name, good, policy="if_better", test=digits.test)
    assert result.promoted and result.champion_version == good
    assert "new version 2 wins" in result.reason
    assert _champion(uri, name) == good


def test_a_tie_keeps_the_current_champion(registry, models, digits) -> None:
    from kdforge.tracking.promote import promote_version

    uri, register, name = registry
    promote_version(name, register("good"))
    result = promote_version(name, register("good"), policy="if_better", test=digits.test)
    assert not result.promoted and result.candidate_test_acc == result.previous_test_acc
    assert " = " in result.reason and _champion(uri, name) == "1"


def test_always_moves_the_alias_even_to_a_worse_model(registry, models) -> None:
    from kdforge.tracking.promote import promote_version

    uri, register, name = registry
    promote_version(name, register("good"))
    result = promote_version(name, register("bad"), policy="always")
    assert result.promoted and "replaces version 1" in result.reason
    assert _champion(uri, name) == "2"


def test_a_champion_that_cannot_run_on_the_split_is_replaced(registry, models, digits) -> None:
    from kdforge.tracking.promote import promote_version

    uri, register, name = registry
    promote_version(name, register("other"))
    result = promote_version(name, register("bad"), policy="if_better", test=digits.test)
    assert result.promoted and "cannot be evaluated on this test split" in result.reason
    assert _champion(uri, name) == "2"


def test_if_better_without_a_test_split_is_a_config_error(registry, models) -> None:
    from kdforge.tracking.promote import promote_version

    _, register, name = registry
    promote_version(name, register("good"))
    with pytest.raises(ConfigError, match="needs the test split"):
        promote_version(name, register("bad"), policy="if_better")


def test_cli_promote_by_name_and_by_search_folder(registry, models, tmp_path, capsys) -> None:
    from mlflow.tracking import MlflowClient

    from kdforge.cli import main

    uri, register, name = registry
    good, bad = register("good"), register("bad")
    MlflowClient(uri).update_model_version(name, good, description="good one")
    assert main(["promote", name, "--version", good, "--tracking-uri", uri]) == 0
    assert _champion(uri, name) == good
    assert MlflowClient(uri).get_registered_model(name).description.endswith("good one")

    config = {
        "name": "p",
        "dataset": {"name": "digits"},
        "teacher": {"name": "checkpoint", "params": {"path": "unused.pt"}},
        "student": {"name": "mlp"},
        "tracking": {"uri": uri},
    }
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {"registered_model_name": name, "registered_model_version": bad, "tracking_uri": uri}
    (folder / "summary.json").write_text(json.dumps(summary))
    capsys.readouterr()
    assert main(["promote", str(folder), "--if-better"]) == 0
    out = capsys.readouterr().out
    assert f"stays on version {good}" in out and _champion(uri, name) == good
    # Without --if-better the search's own version (the worse one) takes the alias.
    assert main(["promote", str(folder)]) == 0
    assert _champion(uri, name) == bad


def test_cli_promote_if_better_needs_a_config(registry, models, capsys) -> None:
    from kdforge.cli import main

    uri, register, name = registry
    register("good")
    assert main(["promote", name, "--if-better", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "--if-better needs the search config" in err and "hint:" in err


def _row_set(x) -> set[bytes]:
    return {row.tobytes() for row in x.flatten(1).numpy()}


def test_if_better_compares_on_rows_neither_version_trained_on(registry, models) -> None:
    """A champion split with another seed: its training rows leave the comparison."""
    from mlflow.tracking import MlflowClient

    from kdforge.config import DatasetRef
    from kdforge.plugin_host.split_record import ref_record, split_tag
    from kdforge.plugins.datasets.digits import Digits
    from kdforge.tracking.promote import promote_version

    uri, register, name = registry
    client = MlflowClient(uri)
    champion = register("good")
    client.set_model_version_tag(
        name,
        champion,
        "kdforge.split",
        split_tag(ref_record(DatasetRef(name="digits", split_seed=0))),
    )
    promote_version(name, champion)
    candidate = register("good")
    ours = DatasetRef(name="digits", split_seed=3)
    client.set_model_version_tag(name, candidate, "kdforge.split", split_tag(ref_record(ours)))
    test = Digits().load(3).test
    leaked = len(_row_set(test.x) & _row_set(Digits().load(0).train.x))
    assert leaked > 50  # another seed: many of these test rows trained the champion
    result = promote_version(
        name, candidate, policy="if_better", test=test, test_split=ref_record(ours)
    )
    assert f"left out: {leaked} in v{champion}'s training split" in result.reason
    assert f"same {len(test) - leaked} test rows neither version trained on" in result.reason
    # On rows it never saw, the champion is no longer flattered: both score the same.
    assert result.candidate_test_acc == result.previous_test_acc


def test_if_better_notes_a_version_without_a_split_record(registry, models, digits) -> None:
    from kdforge.config import DatasetRef
    from kdforge.plugin_host.split_record import ref_record
    from kdforge.tracking.promote import promote_version

    _, register, name = registry
    promote_version(name, register("good"))
    record = ref_record(DatasetRef(name="digits"))
    result = promote_version(
        name, register("bad"), policy="if_better", test=digits.test, test_split=record
    )
    assert "records no split" in result.reason and not result.promoted
