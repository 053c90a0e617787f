"""Install plugin packages into the test venv for one test, and leave it as found.

Entry points are read from installed distributions, so discovery can only be tested
with a real install: ``sys.executable -m pip install --no-deps --no-build-isolation``
of a copy of the package (building in place would leave ``build/`` and ``*.egg-info``
in the source tree), then ``pip uninstall`` and a registry reset afterwards.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

from kdforge.plugin_host.manager import reset_registry

_PIP_ENV = {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def _pip(*args: str) -> None:
    env = {**os.environ, **_PIP_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, timeout=300
    )
    if done.returncode != 0:
        raise AssertionError(f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@contextmanager
def installed_packages(sources: list[Path], workdir: Path) -> Iterator[list[str]]:
    """Install copies of the package folders ``sources``; yield their distribution names.

    Skips when one of them is already installed (e.g. a developer's editable install),
    since uninstalling it afterwards would not leave the venv as found.
    """
    dists = [tomllib.loads((s / "pyproject.toml").read_text())["project"]["name"] for s in sources]
    already = [d for d in dists if _installed(d)]
    if already:
        pytest.skip(f"already installed in this venv: {already} (pip uninstall to run this test)")
    copies = []
    for source in sources:
        copy = workdir / "pkg-src" / source.name
        shutil.copytree(
            source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
        )
        copies.append(str(copy))
    modules = {
        name
        for source in sources
        for name in tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"][
            "packages"
        ]
    }
    reset_registry()
    try:
        _pip("install", "--no-deps", "--no-build-isolation", "-q", *copies)
        importlib.invalidate_caches()
        yield dists
    finally:
        # Uninstall unconditionally: a stale metadata cache must not leave it behind.
        _pip("uninstall", "-y", "-q", *dists)
        for name in list(sys.modules):
            if name.split(".")[0] in modules:
                del sys.modules[name]
        importlib.invalidate_caches()
        reset_registry()
