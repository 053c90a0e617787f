"""Text templates of ``kdforge new-plugin`` (see :mod:`kdforge.plugin_host.scaffold`).

Markers are ``{{key}}``; everything else is written verbatim. Every generated plugin
works as written and passes its kind's contract from :mod:`kdforge.testing`.
"""

from __future__ import annotations

CONTRACT_CLASS = {
    "dataset": "DatasetContract",
    "teacher": "TeacherContract",
    "search_space": "SearchSpaceContract",
    "loss": "LossContract",
    "exporter": "ExporterContract",
    "task": "TaskContract",
}

PYPROJECT = """[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "{{distribution}}"
version = "0.1.0"
description = "kdforge {{kind_label}} plugin '{{name}}'"
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["kdforge>=0.1"]

[project.optional-dependencies]
test = ["pytest>=8"]

# This table is what makes kdforge find the plugin once the package is installed.
[project.entry-points.kdforge]
{{name}} = "{{module}}"

[tool.setuptools]
packages = ["{{module}}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

README = """# {{distribution}}

A [kdforge](https://github.com/kdforge/kdforge) {{kind_label}} plugin: `{{name}}`
(class `{{class_name}}` in `{{module}}/__init__.py`).

## Install and check

```bash
pip install -e .                 # or: pip install {{distribution}}
kdforge plugins show {{name}}    # kind, source, parameters, searched hyperparameters
```

## Test

```bash
pip install -e ".[test]"
pytest
```

`{{test_file}}` runs kdforge's contract for {{kind_label}} plugins
(`kdforge.testing.{{contract}}`): the checks kdforge relies on. Add your own tests next
to it.

## Publish

```bash
python -m pip install build twine
python -m build                  # dist/{{module}}-0.1.0.tar.gz and .whl
python -m twine upload dist/*
```

Anyone who then runs `pip install {{distribution}}` can use `{{name}}` in a config:
kdforge discovers it through the `[project.entry-points.kdforge]` table in
`pyproject.toml`. `KDFORGE_PLUGINS={{name}}` limits loading to it;
`KDFORGE_DISABLE_PLUGIN_AUTOLOAD=1` switches third-party plugins off.

## Use it in a search config
"""

USAGE = {
    "dataset": """
```yaml
dataset:
  name: {{name}}
  params: {num_samples: 600, num_features: 16, num_classes: 3}
```
""",
    "teacher": """
```yaml
teacher:
  name: {{name}}
  params: {weights: teacher_state_dict.pt, input_shape: [16], num_classes: 3}
```
""",
    "search_space": """
```yaml
student:
  name: {{name}}
  params: {min_width: 8, max_width: 64}
```
""",
    "loss": """
```yaml
loss:
  name: {{name}}
  params: {use_labels: true}  # fixed parameters (Params)
  hparams:                    # optional: fix a value or narrow a range
    weight: {low: 0.3, high: 0.9}
```
""",
    "exporter": """
```yaml
export:
  exporter: {{name}}        # built with its Params' defaults
```
""",
    "task": """
```yaml
task:
  name: {{name}}
  params: {beta: 0.0}       # fixed parameters (Params)
```

The dataset must give targets of the task's form: here float32 rows `(n, outputs)`,
a row of NaN for an example without a label, and `DataInfo.num_classes` = outputs.
""",
}

TEST = '''"""Contract tests of the {{kind_label}} plugin ``{{name}}`` (see kdforge.testing)."""

from kdforge.testing import {{contract}}

from {{module}} import {{class_name}}


class Test{{class_name}}({{contract}}):
    plugin_class = {{class_name}}
    registered_name = "{{name}}"
'''

TESTS = {
    "search_space": '''"""Contract tests of the search space ``{{name}}`` (see kdforge.testing)."""

from typing import Any, ClassVar

from kdforge.testing import SearchSpaceContract

from {{module}} import {{class_name}}


class Test{{class_name}}(SearchSpaceContract):
    plugin_class = {{class_name}}
    plugin_params: ClassVar[dict[str, Any]] = {"min_width": 4, "max_width": 16}
    registered_name = "{{name}}"

    def check_sample(self, plugin, arch, model, info):
        assert 4 <= arch["width"] <= 16
'''
}

_HEADER = '''"""kdforge {{kind_label}} plugin ``{{name}}``.

Registered through the ``kdforge`` entry point in pyproject.toml; kdforge calls
``{{hook}}`` once per process, the first time it needs its plugin registry.
"""

from __future__ import annotations
'''

MODULES = {
    "dataset": _HEADER
    + '''
import torch
from pydantic import Field

import kdforge
from kdforge import DataInfo, DatasetPlugin, DataSplits, PluginParams, Split


class {{class_name}}Params(PluginParams):
    """Parameters of the ``{{name}}`` dataset."""

    num_samples: int = Field(600, ge=30, description="Rows generated in total.")
    num_features: int = Field(16, ge=1, description="Features per row.")
    num_classes: int = Field(3, ge=2, description="Number of classes.")
    noise: float = Field(1.0, gt=0, description="Spread of each class around its centre.")


class {{class_name}}(DatasetPlugin):
    """The ``{{name}}`` dataset (say in this line where its data comes from).

    The first docstring line is what ``kdforge plugins`` shows. The body is a working
    starting point to replace with your own data: Gaussian blobs, one per class; the
    rows are fixed and ``seed`` only decides which rows land in which split.
    """

    name = "{{name}}"
    Params = {{class_name}}Params

    def load(self, seed: int) -> DataSplits:
        """Generate the rows, shuffle them with ``seed`` and split 70/15/15."""
        p = self.params
        assert isinstance(p, {{class_name}}Params)
        fixed = torch.Generator().manual_seed(1234)
        centres = torch.randn(p.num_classes, p.num_features, generator=fixed) * 3
        y = torch.arange(p.num_samples) % p.num_classes
        x = centres[y] + p.noise * torch.randn(p.num_samples, p.num_features, generator=fixed)
        order = torch.randperm(p.num_samples, generator=torch.Generator().manual_seed(seed))
        x, y = x[order].float(), y[order].long()
        n_train, n_val = int(0.7 * p.num_samples), int(0.15 * p.num_samples)
        cut = [n_train, n_train + n_val]
        info = DataInfo(
            name="{{name}}", input_shape=(p.num_features,), num_classes=p.num_classes
        )
        return DataSplits(
            info=info,
            train=Split(x[: cut[0]], y[: cut[0]]),
            val=Split(x[cut[0] : cut[1]], y[cut[0] : cut[1]]),
            test=Split(x[cut[1] :], y[cut[1] :]),
        )


@kdforge.hookimpl
def register_datasets(register: kdforge.Register) -> None:
    """Register the ``{{name}}`` dataset."""
    register("{{name}}", {{class_name}})
''',
    "teacher": _HEADER
    + '''
import hashlib
import math
from pathlib import Path

import torch
from pydantic import Field
from torch import nn

import kdforge
from kdforge import ModelOutput, PluginParams, Teacher


class {{class_name}}Params(PluginParams):
    """Parameters of the ``{{name}}`` teacher."""

    weights: str | None = Field(
        None,
        description="state_dict file (torch.save) of the model; seeded random weights if omitted.",
    )
    input_shape: list[int] = Field(
        default_factory=lambda: [16], min_length=1, description="Per-example input shape."
    )
    num_classes: int = Field(3, ge=2, description="Number of classes the model predicts.")
    hidden: int = Field(64, ge=1, description="Hidden width of the model.")


class {{class_name}}(Teacher):
    """The ``{{name}}`` teacher (say in this line what model it loads).

    The first docstring line is what ``kdforge plugins`` shows. The body is a working
    starting point to replace: a PyTorch model rebuilt in code (``_build``) and loaded
    from a state_dict file, read with ``weights_only=True`` so loading it never runs
    pickled code.
    """

    name = "{{name}}"
    Params = {{class_name}}Params

    def _build(self) -> nn.Module:
        p = self.params
        assert isinstance(p, {{class_name}}Params)
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(p.input_shape), p.hidden),
            nn.ReLU(),
            nn.Linear(p.hidden, p.num_classes),
        )

    def load(self) -> None:
        """Build the model and load its weights (or seeded random ones)."""
        p = self.params
        assert isinstance(p, {{class_name}}Params)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = self._build()
        digest = hashlib.sha256()
        if p.weights is not None:
            path = Path(p.weights)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            digest.update(path.read_bytes())
        else:
            for key, value in model.state_dict().items():
                digest.update(key.encode())
                digest.update(value.numpy().tobytes())
        self._model = model.eval()
        self._fingerprint = digest.hexdigest()

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> ModelOutput:
        """Logits of one batch, in eval mode."""
        return ModelOutput(logits=self._model(x.float()))

    def fingerprint(self) -> str:
        """SHA-256 of the weights file (or of the random weights)."""
        return self._fingerprint

    def num_parameters(self) -> int:
        """Number of parameters of the model."""
        return sum(t.numel() for t in self._model.parameters())

    def expected_input_shape(self) -> tuple[int, ...] | None:
        """The configured input shape."""
        p = self.params
        assert isinstance(p, {{class_name}}Params)
        return tuple(p.input_shape)

    def expected_num_classes(self) -> int | None:
        """The configured number of classes."""
        p = self.params
        assert isinstance(p, {{class_name}}Params)
        return p.num_classes


@kdforge.hookimpl
def register_teachers(register: kdforge.Register) -> None:
    """Register the ``{{name}}`` teacher."""
    register("{{name}}", {{class_name}})
''',
    "search_space": _HEADER
    + '''
import math
from typing import Any

from pydantic import Field, model_validator
from torch import nn

import kdforge
from kdforge import DataInfo, PluginParams, SearchSpace


class {{class_name}}Params(PluginParams):
    """Ranges of the ``{{name}}`` search space."""

    min_width: int = Field(8, ge=1, description="Smallest hidden width (log-uniform).")
    max_width: int = Field(128, ge=1, description="Largest hidden width (log-uniform).")

    @model_validator(mode="after")
    def _check(self) -> {{class_name}}Params:
        if self.min_width > self.max_width:
            raise ValueError(f"min_width ({self.min_width}) > max_width ({self.max_width})")
        return self


class {{class_name}}(SearchSpace):
    """The ``{{name}}`` search space (say in this line what family of students it holds).

    The first docstring line is what ``kdforge plugins`` shows. The body is a working
    starting point to replace: one-hidden-layer networks with a searched width and
    activation.
    """

    name = "{{name}}"
    Params = {{class_name}}Params

    def suggest(self, trial: Any, info: DataInfo) -> dict[str, Any] | None:
        """Sample ``width`` and ``activation`` (define-by-run: later names may depend on
        earlier values)."""
        p = self.params
        assert isinstance(p, {{class_name}}Params)
        trial.suggest_int("width", p.min_width, p.max_width, log=True)
        trial.suggest_categorical("activation", ["relu", "gelu"])
        return None

    def build(self, arch: dict[str, Any], info: DataInfo) -> nn.Module:
        """Build the network for one sampled ``arch`` (must be deterministic)."""
        width = int(arch["width"])
        activation = nn.GELU() if arch.get("activation") == "gelu" else nn.ReLU()
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(info.input_shape), width),
            activation,
            nn.Linear(width, info.num_classes),
        )


@kdforge.hookimpl
def register_search_spaces(register: kdforge.Register) -> None:
    """Register the ``{{name}}`` search space."""
    register("{{name}}", {{class_name}})
''',
    "loss": _HEADER
    + '''
import torch
import torch.nn.functional as F
from pydantic import Field

import kdforge
from kdforge import UNLABELED, HParam, LossResult, LossStrategy, ModelOutput, PluginParams


class {{class_name}}Params(PluginParams):
    """Fixed parameters of the ``{{name}}`` loss (validated before a search starts)."""

    use_labels: bool = Field(
        True, description="Add cross-entropy on the labeled rows (transfer rows have none)."
    )


class {{class_name}}(LossStrategy):
    """The ``{{name}}`` distillation loss (say in this line what it does).

    The first docstring line is what ``kdforge plugins`` shows. The body is a working
    starting point to replace: squared error between student and teacher logits, mixed
    with cross-entropy by ``weight``. ``Params`` are fixed per search; each entry of
    ``hyperparameters`` is searched and recorded as the MLflow param ``loss.<name>``.
    """

    name = "{{name}}"
    Params = {{class_name}}Params
    hyperparameters = (
        HParam("weight", 0.0, 1.0, default=0.5, help="Weight of the teacher term."),
    )

    def __call__(
        self, student: ModelOutput, teacher: ModelOutput, labels: torch.Tensor
    ) -> LossResult:
        """Return ``(1 - weight) * CE + weight * teacher term`` and both parts."""
        if student.logits is None or teacher.logits is None:
            raise ValueError("{{name}} needs logits from the student and the teacher")
        p = self.params
        assert isinstance(p, {{class_name}}Params)
        weight = self.hparams["weight"]
        teacher_term = F.mse_loss(student.logits, teacher.logits)
        labeled = labels != UNLABELED  # transfer rows have no label
        if p.use_labels and bool(labeled.any()):
            ce = F.cross_entropy(student.logits[labeled], labels[labeled])
        else:
            ce = student.logits.sum() * 0.0
        total = (1 - weight) * ce + weight * teacher_term
        return LossResult(
            total, {"teacher": float(teacher_term.detach()), "ce": float(ce.detach())}
        )


@kdforge.hookimpl
def register_losses(register: kdforge.Register) -> None:
    """Register the ``{{name}}`` loss."""
    register("{{name}}", {{class_name}})
''',
    "exporter": _HEADER
    + '''
from pathlib import Path

import torch

from pydantic import Field

import kdforge
from kdforge import ExportError, Exporter, ExportResult, PluginParams


class {{class_name}}Params(PluginParams):
    """Parameters of the ``{{name}}`` exporter (``export.params`` in a config)."""

    strict: bool = Field(False, description="Trace with torch.export's strict mode.")


class {{class_name}}(Exporter):
    """The ``{{name}}`` exporter (say in this line what format it writes).

    The first docstring line is what ``kdforge plugins`` shows. The body is a working
    starting point to replace: a ``torch.export`` program (``.pt2``, dynamic batch
    axis). ``export`` returns the largest absolute difference between the exported
    model and PyTorch on ``example``.
    """

    name = "{{name}}"
    Params = {{class_name}}Params
    suffix = ".pt2"

    def export(self, model: torch.nn.Module, example: torch.Tensor, path: Path) -> ExportResult:
        """Export ``model`` to ``path`` and compare the reloaded program with PyTorch."""
        model = model.eval().cpu()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sample = example if len(example) > 1 else torch.cat([example, example])
        try:
            p = self.params
            assert isinstance(p, {{class_name}}Params)
            program = torch.export.export(
                model,
                (sample,),
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                strict=p.strict,
            )
            torch.export.save(program, str(path))
        except Exception as exc:
            message = f"{{name}}: torch.export failed: {type(exc).__name__}: {exc}"
            raise ExportError(message) from exc
        reloaded = torch.export.load(str(path)).module()
        with torch.no_grad():
            diff = (reloaded(sample) - model(sample)).abs().max()
        return ExportResult(path=path, max_abs_diff=float(diff), format="torch.export")


@kdforge.hookimpl
def register_exporters(register: kdforge.Register) -> None:
    """Register the ``{{name}}`` exporter."""
    register("{{name}}", {{class_name}})
''',
    "task": _HEADER
    + '''
import torch
import torch.nn.functional as F
from pydantic import Field

import kdforge
from kdforge import DataError, DataInfo, DataSplits, PluginParams, Task


class {{class_name}}Params(PluginParams):
    """Parameters of the ``{{name}}`` task (``task.params`` in a config)."""

    beta: float = Field(
        0.0,
        ge=0,
        description="Smooth-L1 width: errors below it are squared; 0 is the plain L1 loss.",
    )


class {{class_name}}(Task):
    """The ``{{name}}`` task (say in this line what models predict and how it is scored).

    The first docstring line is what ``kdforge plugins`` shows. The body is a working
    starting point to replace: real-valued targets (float rows ``(n, outputs)``, a row
    of NaN for "no label"), an L1 label loss and mean absolute error (lower is better)
    for selection. A task that learns statistics from the training targets does it in
    ``prepare`` and returns them from ``state`` (see ``kdforge.Task``).
    """

    name = "{{name}}"
    Params = {{class_name}}Params
    output_kind = "values"
    metric = "mae"
    higher_is_better = False
    metric_names = ("mae", "rmse")

    def num_outputs(self, info: DataInfo) -> int:
        """One output per target column."""
        return info.num_classes

    def check(self, splits: DataSplits) -> None:
        """Targets must be finite float rows of ``num_classes`` values (NaN: unknown)."""
        width = splits.info.num_classes
        for name, split in splits.named_splits().items():
            y = split.y
            if y.ndim != 2 or not y.dtype.is_floating_point or y.shape[1] != width:
                raise DataError(
                    f"task {{name}}: the {name} split's targets are {y.dtype} of shape "
                    f"{tuple(y.shape)}, not float rows of {width} values"
                )
            if bool(torch.isinf(y).any()):
                raise DataError(f"task {{name}}: the {name} split's targets contain inf")

    def labeled(self, targets: torch.Tensor) -> torch.Tensor:
        """Rows with every target known."""
        return ~torch.isnan(targets).any(dim=1)

    def label_loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Smooth-L1 over the labeled rows; 0 (not NaN) for a batch without labels."""
        p = self.params
        assert isinstance(p, {{class_name}}Params)
        known = self.labeled(targets)[:, None].expand_as(targets)
        # Unknown cells are compared with the outputs themselves: zero loss, zero
        # gradient, and no NaN reaches the backward pass.
        filled = torch.where(known, targets, outputs.detach())
        cells = F.smooth_l1_loss(outputs, filled, reduction="none", beta=p.beta)
        return (cells * known).sum() / known.sum().clamp_min(1)

    def soft_target(self, outputs: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """The teacher's predictions themselves (no temperature for real values)."""
        return outputs

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """MAE and RMSE (averaged over targets) on the labeled rows; NaN without any."""
        targets = targets.to(outputs.device)
        keep = self.labeled(targets)
        if not bool(keep.any()):
            return dict.fromkeys(self.metric_names, float("nan"))
        error = outputs[keep].double() - targets[keep].double()
        return {
            "mae": float(error.abs().mean(0).mean()),
            "rmse": float(torch.sqrt((error**2).mean(0)).mean()),
        }


@kdforge.hookimpl
def register_tasks(register: kdforge.Register) -> None:
    """Register the ``{{name}}`` task."""
    register("{{name}}", {{class_name}})
''',
}
