"""Every built-in plugin passes the contract kit of its kind (``kdforge.testing``)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch

from kdforge.data import DataInfo
from kdforge.interfaces import ModelOutput, Teacher
from kdforge.plugin_host.manager import BUILTIN_SOURCE, get_registry
from kdforge.plugins.datasets.digits import Digits
from kdforge.plugins.exporters.onnx import OnnxExporter
from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.plugins.tasks.classification import Classification
from kdforge.plugins.tasks.language_modeling import LanguageModeling
from kdforge.plugins.tasks.multilabel import Multilabel
from kdforge.plugins.tasks.regression import Regression
from kdforge.plugins.tasks.token_classification import TokenClassification
from kdforge.search_spaces.cnn import CNNSpace
from kdforge.search_spaces.mlp import MLPSpace
from kdforge.search_spaces.resnet import ResNetSpace
from kdforge.search_spaces.transformer import TransformerSpace
from kdforge.testing import (
    CONTRACTS,
    DatasetContract,
    ExporterContract,
    LossContract,
    SearchSpaceContract,
    TaskContract,
    TeacherContract,
)


class TestDigits(DatasetContract):
    plugin_class = Digits
    registered_name = "digits"


class TestDigitsWithTransfer(DatasetContract):
    plugin_class = Digits
    plugin_params: ClassVar[dict[str, Any]] = {"transfer_fraction": 0.3}
    registered_name = "digits"

    def test_transfer_split_is_unlabeled(self, splits) -> None:
        assert splits.transfer is not None and len(splits.transfer) > 0
        assert bool((splits.transfer.y == -1).all())


class TestMLP(SearchSpaceContract):
    plugin_class = MLPSpace
    registered_name = "mlp"


class TestMLPNarrowed(SearchSpaceContract):
    """Narrowed ranges: every sample stays inside them, so the model stays small."""

    plugin_class = MLPSpace
    plugin_params: ClassVar[dict[str, Any]] = {"max_depth": 2, "min_width": 4, "max_width": 8}
    registered_name = "mlp"
    # Largest model: 64 -> 8 -> 8 -> 10 (image info dominates the flat one).
    max_parameters = (64 * 8 + 8) + (8 * 8 + 8) + (8 * 10 + 10)

    def check_sample(self, plugin, arch, model, info) -> None:
        assert 1 <= arch["depth"] <= 2
        assert all(4 <= arch[f"width_{i}"] <= 8 for i in range(arch["depth"]))


class TestCNN(SearchSpaceContract):
    plugin_class = CNNSpace
    registered_name = "cnn"
    data_infos = (
        *SearchSpaceContract.data_infos,
        DataInfo(name="contract-sequence", input_shape=(2, 16), num_classes=4),
    )

    def check_sample(self, plugin, arch, model, info) -> None:
        assert arch["kernel"] in plugin.params.kernels
        assert 0.0 <= arch.get("dropout", 0.0) <= plugin.params.max_dropout


class TestResNet(SearchSpaceContract):
    plugin_class = ResNetSpace
    plugin_params: ClassVar[dict[str, Any]] = {"max_stages": 2, "max_width": 16}
    registered_name = "resnet"
    num_samples = 4


class TestTransformer(SearchSpaceContract):
    plugin_class = TransformerSpace
    plugin_params: ClassVar[dict[str, Any]] = {"max_layers": 2, "hidden_sizes": [16, 32]}
    registered_name = "transformer"
    num_samples = 4
    data_infos = (
        DataInfo(
            name="contract-tokens",
            input_shape=(12,),
            num_classes=3,
            input_dtype="int64",
            vocab_size=50,
            pad_token_id=0,
        ),
        DataInfo(name="contract-sequence", input_shape=(12, 6), num_classes=4),
    )

    def check_sample(self, plugin, arch, model, info) -> None:
        assert arch["hidden"] % arch["heads"] == 0


class TestOnnx(ExporterContract):
    plugin_class = OnnxExporter
    registered_name = "onnx"


class TestClassification(TaskContract):
    plugin_class = Classification
    registered_name = "classification"


class TestMultilabel(TaskContract):
    plugin_class = Multilabel
    registered_name = "multilabel"


class TestRegression(TaskContract):
    plugin_class = Regression
    registered_name = "regression"


class TestTokenClassification(TaskContract):
    plugin_class = TokenClassification
    registered_name = "token_classification"


class TestLanguageModeling(TaskContract):
    plugin_class = LanguageModeling
    # The contract's example tags are not next tokens: masked mode checks no shift.
    plugin_params: ClassVar[dict[str, Any]] = {"mode": "masked"}
    registered_name = "language_modeling"


class TestRegressionHuberUnscaled(TaskContract):
    plugin_class = Regression
    plugin_params: ClassVar[dict[str, Any]] = {"loss": "huber", "standardize": False}
    registered_name = "regression"
    width = 1


TESTS_ROOT = Path(__file__).resolve().parents[1]
_CONTRACT_KINDS = {cls.__name__: kind for kind, cls in CONTRACTS.items()}


def contract_tests_in(root: Path) -> dict[tuple[str, str], list[str]]:
    """``(kind, registered_name)`` -> test classes that subclass a kdforge contract.

    Read from the source (``ast``), so every test module of the suite counts without
    importing it; a class counts when one of its bases is a contract class by name.
    """
    found: dict[tuple[str, str], list[str]] = {}
    for path in sorted(root.rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            kinds = [
                _CONTRACT_KINDS[b.id]
                for b in node.bases
                if isinstance(b, ast.Name) and b.id in _CONTRACT_KINDS
            ]
            for statement in node.body:
                if (
                    kinds
                    and isinstance(statement, ast.Assign | ast.AnnAssign)
                    and isinstance(statement.value, ast.Constant)
                    and any(
                        isinstance(t, ast.Name) and t.id == "registered_name"
                        for t in (
                            statement.targets
                            if isinstance(statement, ast.Assign)
                            else [statement.target]
                        )
                    )
                ):
                    key = (kinds[0], statement.value.value)
                    found.setdefault(key, []).append(f"{path.relative_to(root)}::{node.name}")
    return found


def test_every_builtin_plugin_has_a_contract_test() -> None:
    """Each built-in plugin is checked by its kind's contract somewhere in tests/."""
    builtins = {(r.kind, r.name) for r in get_registry().list() if r.source == BUILTIN_SOURCE}
    covered = contract_tests_in(TESTS_ROOT)
    missing = sorted(builtins - set(covered))
    assert not missing, (
        f"built-in plugins without a contract test (subclass kdforge.testing's contract "
        f"for the kind and set registered_name): {missing}"
    )


def test_coverage_scan_sees_this_module() -> None:
    covered = contract_tests_in(TESTS_ROOT)
    assert covered[("search_space", "mlp")] == [
        "plugins/test_contracts_builtin.py::TestMLP",
        "plugins/test_contracts_builtin.py::TestMLPNarrowed",
    ]
    assert ("exporter", "onnx") in covered and ("dataset", "digits") in covered


def test_loss_contract_catches_a_broken_loss() -> None:
    """The kit is not vacuous: a loss that ignores the student fails it."""

    class Detached(HintonKD):
        """Hinton KD whose student logits are detached (no gradient)."""

        def __call__(self, student, teacher, labels):
            from kdforge.interfaces import ModelOutput

            assert student.logits is not None
            return super().__call__(ModelOutput(student.logits.detach()), teacher, labels)

    class Contract(LossContract):
        plugin_class = HintonKD

    with pytest.raises(AssertionError, match="does not depend on the student"):
        Contract().test_finite_with_gradients_across_the_range(Detached())


def test_search_space_contract_catches_a_constraint_violation() -> None:
    """check_sample is really called for every sample: a violated bound fails."""
    contract = TestMLPNarrowed()
    contract.max_parameters = 10  # type: ignore[misc]
    with pytest.raises(AssertionError, match="parameters"):
        contract.test_every_sample_builds_a_working_model(MLPSpace(MLPSpace.Params(max_width=8)))


def test_dataset_contract_catches_labels_out_of_range() -> None:
    class BadDigits(Digits):
        """Digits with one validation label out of range."""

        def load(self, seed: int):
            splits = super().load(seed)
            splits.val.y[0] = 10
            return splits

    with pytest.raises(AssertionError, match="val labels outside"):
        TestDigits().test_labels_are_valid(BadDigits().load(0))


def test_teacher_contract_catches_a_teacher_left_in_training_mode() -> None:
    class Sloppy(Teacher):
        """Dropout left on and gradients tracked while predicting."""

        def load(self) -> None:
            torch.manual_seed(0)
            self._model = torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(64, 3)
            )

        def predict(self, x):
            return ModelOutput(self._model(x))

        def fingerprint(self) -> str:
            return "sloppy"

        def num_parameters(self) -> int:
            return 195

        def expected_input_shape(self):
            return (1, 8, 8)

    class Contract(TeacherContract):
        plugin_class = Sloppy

    teacher = Sloppy()
    teacher.load()
    inputs = torch.randn(4, 1, 8, 8)
    with pytest.raises(AssertionError):
        Contract().test_predict_has_no_gradients(teacher, inputs)
    with pytest.raises(AssertionError):
        Contract().test_predict_is_deterministic_per_row(teacher, inputs)


def test_every_registered_task_runs_the_task_contract() -> None:
    """Each built-in task is checked by TaskContract here, with its own registered name."""
    records = get_registry().list()
    tasks = {r.name for r in records if r.kind == "task" and r.source == BUILTIN_SOURCE}
    assert {"classification", "multilabel", "regression"} <= tasks
    covered = contract_tests_in(TESTS_ROOT)
    for name in sorted(tasks):
        assert any(
            test.startswith("plugins/test_contracts_builtin.py::")
            for test in covered.get(("task", name), [])
        ), f"task {name!r} has no TaskContract subclass in this module"


def test_task_contract_catches_a_nan_loss_without_labels() -> None:
    """The kit is not vacuous: a loss that averages over zero labeled rows (NaN) fails it."""

    class Careless(Classification):
        """Classification whose label loss is a plain mean over the labeled rows."""

        def label_loss(self, outputs, targets):
            keep = targets != -1
            return torch.nn.functional.cross_entropy(outputs[keep], targets[keep])

    contract = TestClassification()
    task = Careless()
    prepared = task.prepare(contract.make_splits(task))
    with pytest.raises(AssertionError, match="loss nan"):
        contract.test_label_loss_is_zero_without_labels(task, prepared)


def test_task_contract_catches_a_metric_in_the_wrong_direction() -> None:
    class Backwards(Classification):
        """Classification that claims lower accuracy is better."""

        higher_is_better = False

    contract = TestClassification()
    task = Backwards()
    prepared = task.prepare(contract.make_splits(task))
    with pytest.raises(AssertionError, match="perfect outputs score"):
        contract.test_metrics_are_named_finite_and_directed(task, prepared)


def test_task_contract_catches_a_state_that_does_not_rebuild() -> None:
    class Forgetful(Regression):
        """Regression whose state() forgets the training statistics."""

        def state(self):
            return {"mean": [0.0] * 3, "std": [1.0] * 3}

    contract = TestRegression()
    task = Forgetful()
    prepared = task.prepare(contract.make_splits(task))
    with pytest.raises(AssertionError):
        contract.test_state_rebuilds_the_same_task(task, prepared)
