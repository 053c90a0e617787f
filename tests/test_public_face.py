"""The public face: what ``kdforge`` exports, what the docs name, and the old module paths."""

from __future__ import annotations

import ast
import importlib
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import kdforge
from kdforge._moved import MOVED_MODULES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(kdforge.__file__).parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "benchmarks/README.md"]
FACE_MODULES = {
    "errors",
    "data",
    "interfaces",
    "hookspecs",
    "features",
    "batching",
    "checkpoint",
    "testing",
}


def _resolve(path: str) -> Any:
    """The object a dotted ``kdforge...`` path names (module, then attributes)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def _string_constants() -> set[str]:
    """Every ``"kdforge...."`` string literal in the package: MLflow tags, logger names."""
    found = set()
    for file in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.update(re.findall(r"kdforge\.[\w.]+", node.value))
    return found


def test_everything_in_all_is_importable_from_kdforge() -> None:
    missing = [name for name in kdforge.__all__ if not hasattr(kdforge, name)]
    assert missing == []


def test_the_face_table_of_plugins_md_is_exported() -> None:
    text = (ROOT / "docs/plugins.md").read_text()
    section = text.split("## What a plugin imports: the public face", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[2] for line in section.splitlines() if line.startswith("| ")][1:]
    names = set(re.findall(r"`([A-Za-z_]\w*)", "\n".join(rows)))
    assert names, "the face table is gone"
    assert sorted(names - set(kdforge.__all__)) == []


def test_the_built_in_plugins_use_what_the_face_offers() -> None:
    """Every ``from kdforge import X`` in a built-in plugin names an exported X."""
    for folder in ("plugins", "search_spaces"):
        for file in (PACKAGE / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "kdforge":
                    for alias in node.names:
                        assert alias.name in kdforge.__all__, f"{file.name}: {alias.name}"


def test_every_kdforge_path_the_docs_name_exists() -> None:
    """``kdforge.x.y`` in the docs is importable (MLflow tags and logger names aside)."""
    not_paths = _string_constants()
    broken = []
    for doc in DOCS:
        for path in sorted(set(re.findall(r"`(kdforge(?:\.[A-Za-z_]\w*)+)", doc.read_text()))):
            if path in not_paths or any(p.startswith(path + ".") for p in not_paths):
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("error", DeprecationWarning)  # docs use the new paths
                try:
                    _resolve(path)
                except (ImportError, AttributeError, DeprecationWarning) as exc:
                    broken.append(f"{doc.name}: {path} ({type(exc).__name__})")
    assert broken == []


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_MODULES.items()))
def test_an_old_module_path_still_imports_with_a_warning_naming_the_new(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=re.escape(new)):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_old_paths_are_only_for_modules_that_moved() -> None:
    for old, new in MOVED_MODULES.items():
        assert old.count(".") == 1 and old.split(".")[1] not in FACE_MODULES
        assert not (PACKAGE / (old.split(".")[1] + ".py")).exists(), old
        importlib.import_module(new)
