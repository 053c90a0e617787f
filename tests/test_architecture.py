"""The package's architecture: import-linter contracts, and where imports may be lazy.

``.ci/run`` runs ``lint-imports`` over the installed package; these tests check that
the contracts hold and that they would catch a broken layer or a new import circle,
and they enforce the import rules import-linter cannot see (docs/architecture.md):

* a kdforge module is never imported inside a function, except by a CLI command
  (which imports its implementation when it runs);
* a third-party library imported inside a function is a heavy or optional one, and the
  module says why in a comment.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kdforge

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(kdforge.__file__).parent  # the installed tree (links into core/, plugins/, ...)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

#: Libraries a module may import inside a function (slow to import, or an optional extra).
LAZY_LIBRARIES = {
    "datasets",
    "tokenizers",
    "matplotlib",
    "mlflow",
    "onnx",
    "onnxruntime",
    "optuna",
    "pandas",
    "pyarrow",
    "PIL",
    "ray",
    "sklearn",
    "torch",
    "transformers",
    "torch_pruning",
}
#: Module names that are spelled differently in prose.
_SPOKEN = {"sklearn": "scikit-learn", "PIL": "pillow", "onnxruntime": "onnxruntime"}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out.append((name, path))
    return out


def _function_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import inside a function of ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.level == 0 and sub.module:
                    found.append((sub.lineno, sub.module))
                elif isinstance(sub, ast.Import):
                    found.extend((sub.lineno, alias.name) for alias in sub.names)
    return found


def _lint_imports(*, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_import_contracts_hold() -> None:
    done = _lint_imports()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "extra_import", "broken"),
    [
        # A step package reaching up into the search: a broken layer.
        ("report/leaderboard.py", "import kdforge.search.driver", "Layers"),
        # The trial importing the Tune step that imports it: a circle inside search/.
        ("search/trial.py", "import kdforge.search.tune", "No import circle"),
        # A built-in plugin reaching past the face.
        ("plugins/losses/hinton_kd.py", "import kdforge.search.plan", "public face"),
        # MLflow called from outside kdforge.tracking.
        ("search/publish.py", "import mlflow", "talks to MLflow"),
    ],
)
def test_a_broken_architecture_fails_the_contracts(
    tmp_path: Path, module: str, extra_import: str, broken: str
) -> None:
    copy = tmp_path / "kdforge"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / module
    target.write_text(target.read_text() + f"\n{extra_import}  # noqa\n")
    done = _lint_imports(pythonpath=tmp_path)
    assert done.returncode != 0
    broken_section = done.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_section, done.stdout[-3000:]


def test_kdforge_modules_are_imported_at_the_top_except_by_cli_commands() -> None:
    offenders = [
        f"{name}:{line} imports {imported}"
        for name, path in _modules()
        if not name.startswith("kdforge.cli")
        for line, imported in _function_imports(path)
        if imported.split(".")[0] == "kdforge"
    ]
    assert offenders == []


def test_lazy_imports_are_heavy_libraries_with_a_reason() -> None:
    problems = []
    for name, path in _modules():
        lazy = {imported.split(".")[0] for _, imported in _function_imports(path)} - {"kdforge"}
        if not lazy:
            continue
        comments = " ".join(
            line.lower() for line in path.read_text().splitlines() if line.strip().startswith("#")
        )
        for library in sorted(lazy):
            if library not in LAZY_LIBRARIES:
                problems.append(f"{name} imports {library} inside a function: import it at the top")
            spoken = _SPOKEN.get(library, library).lower()
            if not re.search(rf"\b({re.escape(library.lower())}|{re.escape(spoken)})\b", comments):
                problems.append(f"{name} imports {library} lazily without a comment saying why")
    assert problems == []


def _run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout.strip()


def test_importing_kdforge_sets_no_environment_variable() -> None:
    code = (
        "import os, mlflow, optuna, ray.tune, torch\n"  # what the libraries set themselves
        "before = dict(os.environ)\n"
        "import kdforge, kdforge.cli, kdforge.search.driver, kdforge.tracking.store\n"
        "print(sorted(set(os.environ.items()) ^ set(before.items())))\n"
    )
    assert _run_python(code) == "[]"


def test_the_cli_starts_without_ray_mlflow_or_optuna() -> None:
    """Why CLI commands import their implementation when they run."""
    code = (
        "import sys, kdforge.cli\n"
        "kdforge.cli.build_parser().parse_args(['plugins'])\n"
        "print(sorted(m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules))\n"
    )
    assert _run_python(code) == "[]"
