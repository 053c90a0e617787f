"""``kdforge new-plugin``: the generated packages are complete, installable and usable.

The fast tests check what is written and the errors. The slow one installs one
generated package of every kind (plus the repository's example plugin) into the test
venv, checks discovery, runs all their generated contract tests in one pytest
subprocess, and runs a real search whose every plugin comes from them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

from kdforge.cli import main
from kdforge.errors import ConfigError, PluginError
from kdforge.hookspecs import HOOK_KINDS
from kdforge.plugin_host.scaffold import new_plugin, package_names
from tests._plugin_install import installed_packages

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "plugins" / "kdforge-example-loss"
NAMES = {kind: f"probe_{kind}" for kind in HOOK_KINDS}


def test_package_names() -> None:
    assert package_names("my_loss") == ("kdforge-my-loss", "kdforge_my_loss", "MyLoss")
    assert package_names("Fancy-Data") == ("kdforge-fancy-data", "kdforge_fancy_data", "FancyData")


@pytest.mark.parametrize("kind", list(HOOK_KINDS))
def test_new_plugin_writes_a_complete_package(kind: str, tmp_path: Path) -> None:
    name = NAMES[kind]
    result = new_plugin(kind, name, tmp_path / "pkg")
    root = result.root
    assert sorted(result.files) == sorted(
        ["pyproject.toml", "README.md", f"{result.module}/__init__.py", f"tests/test_{name}.py"]
    )
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert (
        project["project"]["name"]
        == result.distribution
        == f"kdforge-probe-{kind.replace('_', '-')}"
    )
    assert project["project"]["entry-points"]["kdforge"] == {name: result.module}
    assert project["tool"]["setuptools"]["packages"] == [result.module]
    module_text = (root / result.module / "__init__.py").read_text()
    compile(module_text, "module", "exec")
    assert f"def {HOOK_KINDS[kind]}(register" in module_text and "@kdforge.hookimpl" in module_text
    test_text = (root / "tests" / f"test_{name}.py").read_text()
    compile(test_text, "test", "exec")
    assert "from kdforge.testing import" in test_text and f'registered_name = "{name}"' in test_text
    readme = (root / "README.md").read_text()
    assert f"kdforge plugins show {name}" in readme and "python -m build" in readme
    assert "{{" not in module_text + test_text + readme


def test_generated_plugin_works_before_install(tmp_path: Path, monkeypatch) -> None:
    """The generated loss is a working LossStrategy (checked without installing)."""
    import torch

    from kdforge.interfaces import ModelOutput

    result = new_plugin("loss", "scratch_loss", tmp_path / "pkg")
    monkeypatch.syspath_prepend(str(result.root))
    module = __import__(result.module)
    try:
        loss = getattr(module, result.class_name)()
        logits = torch.randn(4, 3, requires_grad=True)
        total = loss(
            ModelOutput(logits), ModelOutput(torch.randn(4, 3)), torch.tensor([0, 1, -1, 2])
        )
        total.total.backward()
        assert logits.grad is not None and torch.isfinite(total.total)
    finally:
        sys.modules.pop(result.module, None)


@pytest.mark.parametrize("kind", list(HOOK_KINDS))
def test_every_kind_has_its_own_params_and_a_neutral_docstring(
    kind: str, tmp_path: Path, monkeypatch
) -> None:
    """Each generated plugin declares a ``<Class>Params`` with a documented field, and
    its one-line description names the plugin instead of describing the example."""
    from kdforge.interfaces import PluginParams

    result = new_plugin(kind, NAMES[kind], tmp_path / "pkg")
    monkeypatch.syspath_prepend(str(result.root))
    try:
        cls = getattr(__import__(result.module), result.class_name)
        params = cls.Params
        assert params is not PluginParams and issubclass(params, PluginParams)
        assert params.__name__ == f"{result.class_name}Params" and params.model_fields
        assert all(field.description for field in params.model_fields.values())
        first_line = (cls.__doc__ or "").strip().splitlines()[0]
        assert f"``{NAMES[kind]}``" in first_line
        for example_word in ("Hinton", "KL", "Gaussian", "torch.export", "hidden"):
            assert example_word not in first_line
    finally:
        sys.modules.pop(result.module, None)


def test_generated_contract_tests_pass_without_installing(tmp_path: Path) -> None:
    """Every kind's generated test file (kdforge's contract kit) passes on its plugin,
    imported from the package folder; registration is checked by the slow install test."""
    roots = [new_plugin(kind, NAMES[kind], tmp_path / kind).root for kind in HOOK_KINDS]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "not registered_under_its_name",
            *[str(root / "tests") for root in roots],
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(str(root) for root in roots)},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_cli_new_plugin(tmp_path: Path, capsys) -> None:
    target = tmp_path / "kdforge-cli-loss"
    assert main(["new-plugin", "loss", "cli_loss", str(target)]) == 0
    out = capsys.readouterr().out
    assert "kdforge-cli-loss" in out and "pyproject.toml" in out
    assert (target / "kdforge_cli_loss" / "__init__.py").is_file()
    assert main(["new-plugin", "loss", "cli_loss", str(target)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "hint:" in err


def test_cli_new_plugin_defaults_to_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", "search-space", "cwd_space"]) == 0
    assert (tmp_path / "kdforge-cwd-space" / "kdforge_cwd_space" / "__init__.py").is_file()


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown plugin kind 'los'") as bad_kind:
        new_plugin("los", "x", tmp_path / "a")
    assert bad_kind.value.hint == "did you mean 'loss'?"
    with pytest.raises(ConfigError, match="invalid plugin name '1abc'"):
        new_plugin("loss", "1abc", tmp_path / "b")
    with pytest.raises(
        PluginError, match=r"loss 'hinton_kd' already exists \(kdforge \(built-in\)"
    ):
        new_plugin("loss", "hinton_kd", tmp_path / "c")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        new_plugin("loss", "fresh_loss", tmp_path / "d")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_generated_packages_install_pass_their_tests_and_run_a_search(
    tmp_path: Path, ray_session
) -> None:
    from kdforge.config import SearchConfig
    from kdforge.plugin_host.manager import get_registry
    from kdforge.search.driver import run_search

    roots = [new_plugin(kind, NAMES[kind], tmp_path / kind).root for kind in HOOK_KINDS]
    with installed_packages([*roots, EXAMPLE], tmp_path) as dists:
        registry = get_registry()
        for kind, name in NAMES.items():
            record = registry.get(kind, name)
            assert record.source == package_names(name)[0] and record.version == "0.1.0"
            assert record.entry_point == f"{name} = {package_names(name)[1]}"
        assert registry.get("loss", "dist_kd").source == "kdforge-example-loss"
        assert not registry.failures and not registry.conflicts
        assert len(dists) == len(HOOK_KINDS) + 1

        # Every generated test suite (and the example's) passes, in one subprocess.
        suites = [str(root / "tests") for root in roots] + [str(EXAMPLE / "tests")]
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert "failed" not in done.stdout and "skipped" not in done.stdout

        # A real search whose dataset, teacher, student, loss and exporter are all new.
        config = SearchConfig.model_validate(
            {
                "name": "scaffolded",
                "output_dir": str(tmp_path / "runs"),
                "dataset": {"name": NAMES["dataset"], "params": {"num_samples": 300}},
                "teacher": {"name": NAMES["teacher"]},
                "student": {"name": NAMES["search_space"], "params": {"max_width": 16}},
                "loss": {"name": NAMES["loss"]},
                "search": {"num_trials": 2, "epochs": 2, "grace_period": 1},
                "baseline": {"enabled": False},
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
                "export": {"exporter": NAMES["exporter"], "tolerance": 1e-4},
            }
        )
        result = run_search(config, emit=lambda _: None)
        assert result.best is not None
        exported = Path(result.summary["export_path"])
        assert exported.suffix == ".pt2" and exported.is_file()
        assert result.summary["export_max_abs_diff"] <= 1e-4
