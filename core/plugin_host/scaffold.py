"""``kdforge new-plugin KIND NAME [DIR]``: write a pip-installable plugin package.

The package holds a ``pyproject.toml`` declaring the ``kdforge`` entry point, one
module with a working plugin of the kind and its ``register_*`` hook, a test that runs
the kind's contract from :mod:`kdforge.testing`, and a README on using, testing and
publishing it. The plugin code comes from :mod:`kdforge.plugin_host._templates`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from kdforge.errors import ConfigError, PluginError, closest_match
from kdforge.hookspecs import HOOK_KINDS
from kdforge.plugin_host import _templates as templates
from kdforge.plugin_host.manager import get_registry

__all__ = ["ScaffoldResult", "new_plugin", "package_names"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class ScaffoldResult:
    """What :func:`new_plugin` wrote.

    Attributes:
        root: The package folder.
        files: The files written, relative to ``root``.
        distribution: The distribution name (``pip install``/``pip uninstall``).
        module: The importable module the entry point names.
        class_name: The plugin class.
    """

    root: Path
    files: tuple[str, ...]
    distribution: str
    module: str
    class_name: str


def package_names(name: str) -> tuple[str, str, str]:
    """``(distribution, module, class name)`` for plugin ``name``.

    ``my_loss`` -> ``("kdforge-my-loss", "kdforge_my_loss", "MyLoss")``.
    """
    snake = name.lower().replace("-", "_")
    camel = "".join(part.capitalize() for part in snake.split("_") if part)
    return f"kdforge-{snake.replace('_', '-')}", f"kdforge_{snake}", camel


def new_plugin(
    kind: str, name: str, directory: str | Path | None = None, *, check_registry: bool = True
) -> ScaffoldResult:
    """Write a new plugin package of ``kind`` called ``name``.

    Args:
        kind: ``dataset``, ``teacher``, ``search_space`` (or ``search-space``), ``loss``,
            ``exporter`` or ``task``.
        name: The name configs will use (letters, digits, ``_``, ``-``).
        directory: The package folder to create (default ``./kdforge-<name>``); it must
            not exist or be empty.
        check_registry: Refuse a name that an installed plugin of the kind already has.

    Returns:
        What was written.

    Raises:
        ConfigError: unknown kind, invalid name, or a non-empty target folder.
        PluginError: the name is already taken by an installed plugin of that kind.
    """
    kind = kind.strip().lower().replace("-", "_")
    if kind not in HOOK_KINDS:
        suggestion = closest_match(kind, HOOK_KINDS)
        raise ConfigError(
            f"new-plugin: unknown plugin kind {kind!r}; kinds: {', '.join(HOOK_KINDS)}",
            hint=f"did you mean {suggestion!r}?" if suggestion else None,
        )
    if not _NAME.match(name):
        raise ConfigError(
            f"new-plugin: invalid plugin name {name!r}",
            hint="start with a letter; use letters, digits, '_' or '-' (e.g. my_loss)",
        )
    distribution, module, class_name = package_names(name)
    if check_registry:
        _refuse_taken(kind, name)
    root = Path(directory) if directory is not None else Path.cwd() / distribution
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(
            f"new-plugin: {root} already exists and is not an empty folder",
            hint="pass another DIR, or remove that folder first",
        )
    # A unique test basename: pytest cannot collect two test_plugin.py of different
    # packages in one run (their tests/ folders are not packages).
    test_file = f"tests/test_{module.removeprefix('kdforge_')}.py"
    fields = {
        "kind": kind,
        "kind_label": kind.replace("_", " "),
        "name": name,
        "distribution": distribution,
        "module": module,
        "class_name": class_name,
        "hook": HOOK_KINDS[kind],
        "contract": templates.CONTRACT_CLASS[kind],
        "test_file": test_file,
    }
    files = {
        "pyproject.toml": templates.PYPROJECT,
        "README.md": templates.README + templates.USAGE[kind],
        f"{module}/__init__.py": templates.MODULES[kind],
        test_file: templates.TESTS.get(kind, templates.TEST),
    }
    for relative, template in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_fill(template, fields), encoding="utf-8")
    return ScaffoldResult(root, tuple(files), distribution, module, class_name)


def _fill(template: str, fields: dict[str, str]) -> str:
    """Replace ``{{key}}`` markers (templates hold Python and TOML braces verbatim)."""
    out = template
    for key, value in fields.items():
        out = out.replace("{{" + key + "}}", value)
    leftover = re.search(r"\{\{\w+\}\}", out)
    if leftover:  # a template bug, not a user error
        raise RuntimeError(f"scaffold template has an unknown marker {leftover.group()}")
    return out


def _refuse_taken(kind: str, name: str) -> None:

    record = get_registry().records[kind].get(name)
    if record is not None:
        raise PluginError(
            f"new-plugin: {kind.replace('_', ' ')} {name!r} already exists ({record.origin}); "
            "a second plugin with that name would clash",
            hint="choose another NAME",
        )
