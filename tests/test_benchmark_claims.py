"""Every measured number in README.md and benchmarks/README.md has a kept source.

Rules (benchmarks/README.md says them to contributors):

* every table of ``benchmarks/README.md`` sits in a section that links one or more kept
  outputs ``results/<name>_<date>.txt``; each file exists, says when and how it was made
  (a ``$ python benchmarks/...`` command line and a date), and every number in the
  table's body appears in one of them;
* every paragraph or code block of ``README.md`` with a measured number (a decimal, a
  ratio such as ``12.5x``, a time, a percentage) is preceded by a
  ``<!-- source: benchmarks/results/<file> ... -->`` comment whose files exist and hold
  those numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"

_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")
_START = r"(?<![\w.=<>])(?<![A-Za-z]-)"  # not inside a word, version or name (Apache-2.0)
_MEASURED = re.compile(
    _START + r"\d[\d,]*(?:\.\d+)?(?:\s?(?:ms|s|min|MiB|GiB|%)\b|x\b)|" + _START + r"\d+\.\d+"
)


def _normalise(token: str) -> str:
    return token.replace(",", "")


def _numbers_in(text: str) -> set[str]:
    return {_normalise(t) for t in _NUMBER.findall(text)}


def _kept(names: list[str]) -> str:
    texts = []
    for name in names:
        path = ROOT / name if name.startswith("benchmarks/") else BENCH / name
        assert path.is_file(), f"cited output {name} does not exist"
        text = path.read_text()
        assert re.search(r"^[$#] (?:command: )?python benchmarks/", text, flags=re.M), (
            f"{name} does not say which command made it"
        )
        assert re.search(r"20\d\d-\d\d-\d\d", text), f"{name} does not say when it was made"
        texts.append(text)
    return "\n".join(texts)


def _sections(markdown: str) -> list[tuple[str, str]]:
    parts = re.split(r"^## ", markdown, flags=re.M)
    return [(p.splitlines()[0], p) for p in parts[1:]]


def _table_bodies(section: str) -> list[list[str]]:
    tables, current = [], []
    for line in section.splitlines():
        if line.lstrip().startswith("|"):
            current.append(line.strip())
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    # drop the header row and the |---| row
    return [t[2:] for t in tables if len(t) > 2]


def _strip_code_spans(text: str) -> str:
    return re.sub(r"`[^`\n]*`", "", text)


BENCH_SECTIONS = _sections((BENCH / "README.md").read_text())


@pytest.mark.parametrize("title,section", BENCH_SECTIONS, ids=[t for t, _ in BENCH_SECTIONS])
def test_benchmark_tables_trace_to_kept_outputs(title: str, section: str) -> None:
    bodies = _table_bodies(section)
    if not bodies:
        return
    cited = sorted(set(re.findall(r"results/[\w.-]+\.txt", section)))
    assert cited, f"section {title!r} has a table but links no kept output (results/*.txt)"
    kept = _numbers_in(_kept(cited))
    for body in bodies:
        for row in body:
            missing = sorted(_numbers_in(_strip_code_spans(row)) - kept)
            assert not missing, f"{title!r}: {missing} of row {row!r} are not in {cited}"


def _readme_blocks(markdown: str) -> list[tuple[str, str]]:
    """(the source comment just before the block, or '', the block), paragraph by paragraph."""
    blocks: list[tuple[str, str]] = []
    pending = ""
    for block in re.split(r"\n\s*\n", markdown):
        match = re.match(r"\s*(<!-- source:.*?-->)\s*(.*)", block, flags=re.S)
        if match:
            pending, block = match.group(1), match.group(2)
            if not block.strip():
                continue
        blocks.append((pending, block))
        pending = ""
    return blocks


def test_readme_numbers_trace_to_kept_outputs() -> None:
    text = (ROOT / "README.md").read_text()
    # fenced code blocks may contain blank lines: keep each as one block
    text = re.sub(r"```.*?```", lambda m: m.group(0).replace("\n\n", "\n \n"), text, flags=re.S)
    checked = 0
    for source, block in _readme_blocks(text):
        lines = [ln for ln in block.splitlines() if "==" not in ln and ">=" not in ln]
        measured = _MEASURED.findall(_strip_code_spans("\n".join(lines)))
        if not measured:
            continue
        assert source, (
            f"README.md: numbers {measured} have no <!-- source: ... --> before:\n{block}"
        )
        cited = re.findall(r"benchmarks/results/[\w.-]+\.txt", source)
        assert cited, f"README.md: the source comment names no kept output: {source}"
        kept = _numbers_in(_kept(cited))
        for token in measured:
            number = _normalise(_NUMBER.findall(token)[0])
            assert number in kept, f"README.md: {token!r} is not in {cited}:\n{block}"
        checked += 1
    assert checked, "README.md has no measured numbers at all: the scan is broken"


def test_the_check_fails_without_a_source(tmp_path: Path) -> None:
    """The rule bites: a measured number with no source comment is found."""
    block = "A search costs ~11.5 s once on a laptop."
    assert _MEASURED.findall(block)
    assert _readme_blocks(block) == [("", block)]
