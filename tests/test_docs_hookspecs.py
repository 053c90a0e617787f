"""Meta-test: every hookspec is documented in docs/plugins.md and exercised by a test.

Adding a hook to ``kdforge.hookspecs`` without a guide section (heading + signature)
or without a test that implements it fails here. ``register_*`` hooks must also map to
a plugin kind with a base class and a contract in ``kdforge.testing``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kdforge import hookspecs
from kdforge.plugin_host.manager import PLUGIN_BASES, PluginRecord
from kdforge.plugin_host.records import check_record
from kdforge.testing import CONTRACTS

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"


def hook_specs() -> dict[str, Callable[..., Any]]:
    """The hook specifications of kdforge, by name."""
    return {n: f for n, f in vars(hookspecs).items() if hasattr(f, "kdforge_spec")}


def signature_text(name: str, spec: Callable[..., Any]) -> str:
    """``def name(arg: Type) -> Ret`` as written in the spec (annotations are strings)."""
    annotations = dict(spec.__annotations__)
    returns = annotations.pop("return", "None")
    args = ", ".join(f"{arg}: {annotation}" for arg, annotation in annotations.items())
    return f"def {name}({args}) -> {returns}"


def docs_problems(specs: dict[str, Callable[..., Any]], guide: str) -> list[str]:
    """What the guide lacks: a ``### `hook``` section with the signature and a doc line."""
    problems = []
    for name, spec in specs.items():
        match = re.search(rf"^###\s+`{name}`\s*$(.*?)(?=^##)", guide + "\n##", re.M | re.S)
        if match is None:
            problems.append(f"{name}: no '### `{name}`' section in docs/plugins.md")
            continue
        section = match.group(1)
        if signature_text(name, spec) not in section:
            problems.append(f"{name}: section lacks the signature {signature_text(name, spec)!r}")
        if "called" not in section.lower():
            problems.append(f"{name}: section does not say when it is called")
    return problems


def untested_hooks(specs: dict[str, Callable[..., Any]], tests_root: Path, skip: Path) -> list[str]:
    """Hooks that no test implements (a ``def <hook>(`` in a test module or its strings)."""
    sources = [
        p.read_text(encoding="utf-8") for p in tests_root.rglob("*.py") if p.resolve() != skip
    ]
    return [
        f"{name}: no test implements it (def {name}(...))"
        for name in specs
        if not any(re.search(rf"\bdef {name}\(", text) for text in sources)
    ]


def test_every_hookspec_is_documented() -> None:
    assert hook_specs(), "no hookspecs found"
    assert not docs_problems(hook_specs(), GUIDE.read_text(encoding="utf-8"))


def test_every_hookspec_is_exercised_by_a_test() -> None:
    assert not untested_hooks(hook_specs(), TESTS, Path(__file__).resolve())


def test_every_register_hook_has_a_kind_base_and_contract() -> None:
    for name, spec in hook_specs().items():
        assert spec.__doc__ and "Called" in spec.__doc__, f"{name}: docstring says when"
        if not name.startswith("register_"):
            continue
        kinds = [kind for kind, hook in hookspecs.HOOK_KINDS.items() if hook == name]
        assert len(kinds) == 1, f"{name}: add it to HOOK_KINDS"
        assert kinds[0] in PLUGIN_BASES, f"{name}: add a base class to PLUGIN_BASES"
        assert kinds[0] in CONTRACTS, f"{name}: add a contract to kdforge.testing"


def test_guide_names_every_contract_and_its_python_compiles() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    for contract in CONTRACTS.values():
        assert f"`{contract.__name__}`" in guide, contract.__name__
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    assert len(blocks) >= 10
    for block in blocks:
        ast.parse(block.replace(" -> None\n", " -> None: ...\n") if "def " in block else block)


def test_the_meta_checks_catch_an_undocumented_untested_hook(tmp_path: Path) -> None:
    def register_widgets(register: hookspecs.Register) -> None:
        """Register widgets. Called once."""

    register_widgets.__annotations__ = {"register": "Register", "return": "None"}
    specs = {**hook_specs(), "register_widgets": register_widgets}
    guide = GUIDE.read_text(encoding="utf-8")
    assert docs_problems(specs, guide) == [
        "register_widgets: no '### `register_widgets`' section in docs/plugins.md"
    ]
    documented = (
        guide + "\n### `register_widgets`\n\n```python\n"
        "def register_widgets(register: Register) -> None\n```\nCalled once.\n"
    )
    assert docs_problems(specs, documented) == []
    assert untested_hooks(specs, TESTS, Path(__file__).resolve()) == [
        "register_widgets: no test implements it (def register_widgets(...))"
    ]
    (tmp_path / "test_widgets.py").write_text("def register_widgets(register):\n    pass\n")
    assert untested_hooks({"register_widgets": register_widgets}, tmp_path, Path()) == []


def test_guide_examples_register_valid_plugins() -> None:
    """Each worked example in the guide defines a plugin its hook registers validly."""
    guide = GUIDE.read_text(encoding="utf-8")
    examples = [
        b for b in re.findall(r"```python\n(.*?)```", guide, re.S) if "@kdforge.hookimpl" in b
    ]
    registered: dict[str, str] = {}
    for block in examples:
        namespace: dict[str, Any] = {"__name__": "kdforge_docs_example"}
        exec(compile(block, "docs/plugins.md", "exec"), namespace)
        for hook, kind in {h: k for k, h in hookspecs.HOOK_KINDS.items()}.items():
            if hook in namespace:
                found: list[tuple[str, Any]] = []
                namespace[hook](lambda name, cls, found=found: found.append((name, cls)))
                for name, cls in found:
                    check_record(PluginRecord(kind, name, cls, "docs", "0"))
                    registered[kind] = name
    assert set(registered) == set(hookspecs.HOOK_KINDS), registered
