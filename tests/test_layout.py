"""The distribution installs one import namespace, ``kdforge``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def test_no_top_level_core_or_plugins_modules(tmp_path: Path) -> None:
    code = (
        "import importlib.util as u, kdforge, kdforge.plugins, kdforge.search_spaces, "
        "kdforge.deploy\n"
        "print([n for n in ('core', 'plugins', 'search_spaces', 'deploy') if u.find_spec(n)])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "kdforge"
    assert script.exists()
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "search" in out.stdout and "train-teacher" in out.stdout


def test_every_package_folder_is_installed() -> None:
    """A sub-package missing from pyproject's list would not be in the installed tree."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = {folder: name for name, folder in config["package-dir"].items()}
    found = set()
    for folder, name in mapped.items():
        for init in (root / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(root / folder).parts
            found.add(".".join([name, *relative]))
    assert found == set(config["packages"])
