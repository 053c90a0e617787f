"""docs/config.md documents every config key and is up to date with the code."""

from __future__ import annotations

from pathlib import Path

from kdforge.config.docs import render_config_docs

DOCS = Path(__file__).resolve().parents[3] / "docs" / "config.md"


def test_config_docs_are_current() -> None:
    assert DOCS.read_text() == render_config_docs(), (
        "docs/config.md is stale: run `python -m kdforge.config.docs > docs/config.md`"
    )


def test_every_key_has_a_description() -> None:
    for line in render_config_docs().splitlines():
        if line.startswith("| `"):
            assert not line.rstrip().endswith("|  |"), f"undocumented key: {line}"
