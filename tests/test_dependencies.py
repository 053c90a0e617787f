"""Declared dependencies match the code.

Every third-party module that the package's source imports (``core/``, ``plugins/``,
``search_spaces/``, ``deploy/``) must come from a distribution declared in
``pyproject.toml``: in the core dependencies, or in the extra that covers the file
importing it (a Hugging Face plugin may need only ``[hf]``). A module that only arrives
as somebody else's dependency breaks when that somebody drops it. The lower bounds are
reasoned in comments next to each one in pyproject.toml; here they must at least admit
the installed versions.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("core", "plugins", "search_spaces", "deploy")

#: Files whose imports an extra covers (path prefix -> extra).
EXTRA_FOR = {
    "plugins/teachers/huggingface.py": "hf",
    "plugins/datasets/_text.py": "hf",
    "plugins/datasets/hf_disk.py": "hf",
    "plugins/datasets/_corpus.py": "hf",
    # Raw-text students (registered and served with their tokenizer): text searches only.
    "core/tracking/text_model.py": "hf",
    "core/tracking/text_pyfunc.py": "hf",
    "deploy/ray_serve_app.py": "serve",
    "search_spaces/_cut.py": "prune",
    # Language-model students (hf_lm*): searches distilling a Hugging Face LM only.
    "search_spaces/hf_lm": "hf",
    "core/testing/": "testing",
    # Tiny language models for tests (kdforge.testing.lm): the [hf] extra besides the kit's.
    "core/testing/lm.py": "hf",
    # Language-model students saved and registered as Hugging Face models.
    "core/export/hf_folder.py": "hf",
    "core/tracking/hf_model.py": "hf",
    # s3:// and other object-store URIs (pyarrow also comes with ray[tune]).
    "core/storage/": "s3",
}


def _name(requirement: str) -> str:
    """``"ray[tune]>=2.40"`` -> ``"ray"`` (normalised)."""
    bare = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", bare).lower()


def _declared() -> tuple[list[str], dict[str, list[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"], project["optional-dependencies"]


def _third_party_imports() -> dict[tuple[str, str], int]:
    """(file, top-level module) -> line of every absolute third-party import."""
    found: dict[tuple[str, str], int] = {}
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in ("kdforge", "__future__"):
                        continue
                    found.setdefault((path.relative_to(ROOT).as_posix(), top), node.lineno)
    return found


def test_every_imported_package_is_declared() -> None:
    core, extras = _declared()
    core_names = {_name(r) for r in core}
    distributions = metadata.packages_distributions()
    imports = _third_party_imports()
    assert imports, "the scan found no imports at all"
    missing = []
    for (file, module), line in sorted(imports.items()):
        dists = {_name(d) for d in distributions.get(module, [])}
        assert dists, f"{file}:{line}: no installed distribution provides {module!r}"
        allowed = set(core_names)
        for prefix, extra in EXTRA_FOR.items():
            if file.startswith(prefix):
                allowed |= {_name(r) for r in extras[extra]}
        if not dists & allowed:
            missing.append(f"{file}:{line} imports {module} ({'/'.join(sorted(dists))})")
    assert not missing, "imported but not declared in pyproject.toml:\n" + "\n".join(missing)


def test_declared_bounds_admit_the_installed_versions() -> None:
    core, extras = _declared()
    for requirement in [*core, *extras["testing"]]:
        match = re.search(r">=([0-9][0-9.]*)", requirement)
        assert match, f"{requirement!r} has no lower bound"
        installed = metadata.version(_name(requirement))
        have = tuple(int(p) for p in re.findall(r"\d+", installed)[:3])
        need = tuple(int(p) for p in match.group(1).split("."))
        assert have >= need, f"{requirement}: installed {installed} is below the bound"


def test_bounds_cover_the_features_used() -> None:
    """The features named in pyproject's comments are above their bounds."""
    import optuna
    import torch

    core, _ = _declared()
    bounds = {_name(r): r for r in core}
    assert "torch>=2.5" in bounds["torch"]  # torch.onnx.export(dynamo=True)
    assert "optuna>=5.0" in bounds["optuna"]  # Trial.set_constraint
    assert hasattr(optuna.trial.Trial, "set_constraint")
    assert "dynamo" in torch.onnx.export.__code__.co_varnames


def test_testing_kit_without_pytest_says_which_extra() -> None:
    """Without pytest, ``import kdforge.testing`` fails with one kdforge error naming the extra."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'pytest':\n"
        "            raise ModuleNotFoundError(\"No module named 'pytest'\", name='pytest')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from kdforge.errors import PluginError\n"
        "try:\n"
        "    import kdforge.testing\n"
        "except PluginError as exc:\n"
        "    print('ERR', exc, exc.hint)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "ERR kdforge.testing needs pytest" in out
    assert 'pip install "kdforge[testing]"' in out


@pytest.mark.parametrize("extra", ["hf", "serve", "testing", "prune"])
def test_extras_exist(extra: str) -> None:
    _, extras = _declared()
    assert extras[extra]
