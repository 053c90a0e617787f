"""Config strictness through the real CLI (issue 20 item 6, issue 22 item 8).

Each case runs ``kdforge search`` in a subprocess: exit 2, an ``error:`` line naming
the source (the file and line, or ``--set KEY``) and a ``hint:`` line, no traceback,
and nothing trained or created.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdforge.config import PluginRef
from kdforge.config.loading import load_search_config
from kdforge.errors import ConfigError
from kdforge.plugin_host.resolve import instantiate
from tests.conftest import tiny_search_config


def _kdforge(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kdforge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _refused(done: subprocess.CompletedProcess) -> str:
    """The error line of a refused command (checked to be one line, plus a hint)."""
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) <= 2, done.stderr
    return done.stderr


@pytest.fixture
def config_text(tmp_path: Path) -> str:
    raw = tiny_search_config(tmp_path / "teacher.pt", tmp_path)
    return yaml.safe_dump(raw, sort_keys=False)


def test_duplicate_key_names_both_lines(tmp_path: Path, config_text: str) -> None:
    text = config_text.replace("  epochs: 4\n", "  epochs: 4\n  epochs: 9\n")
    lines = text.splitlines()
    first = lines.index("  epochs: 4") + 1
    file = tmp_path / "dup.yaml"
    file.write_text(text)
    err = _refused(_kdforge("search", str(file), cwd=tmp_path))
    assert str(file) in err and f"lines {first} and {first + 1}" in err
    assert "'epochs' appears twice" in err


def test_a_quoted_number_is_refused_and_floats_in_e_notation_are_numbers(
    tmp_path: Path, config_text: str
) -> None:
    file = tmp_path / "quoted.yaml"
    file.write_text(config_text.replace("search:\n", "search:\n  batch_size: '64'\n"))
    err = _refused(_kdforge("search", str(file), cwd=tmp_path))
    assert f"{file}: search.batch_size: expected a number" in err and "'64'" in err
    # Unquoted numbers of every usual spelling still load; an int where a float goes too.
    file.write_text(
        config_text.replace("search:\n", "search:\n  batch_size: 64\n  lr: {low: 1e-4, high: 1}\n")
    )
    config = load_search_config(file)
    assert config.search.batch_size == 64
    assert config.search.lr.low == pytest.approx(1e-4) and isinstance(config.search.lr.high, float)
    # Plugin params are checked the same way.
    ref = PluginRef(name="mlp", params={"max_depth": "2"})
    with pytest.raises(ConfigError, match=r"student\.params.*expected a number"):
        instantiate("search_space", ref, "student")


def test_yaml_errors_name_the_file_and_line(tmp_path: Path, config_text: str) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text(config_text + "extra: [1, 2\n")
    err = _refused(_kdforge("search", str(file), cwd=tmp_path))
    assert f"error: {file}: invalid YAML at line" in err and "<unicode string>" not in err


def test_an_unquoted_brace_path_says_quote_the_path(tmp_path: Path, config_text: str) -> None:
    file = tmp_path / "braces.yaml"
    file.write_text(
        config_text.replace(
            "  name: digits\n", "  name: arrays\n  params: {path: /data/{split}.npz}\n"
        )
    )
    err = _refused(_kdforge("search", str(file), cwd=tmp_path))
    assert str(file) in err and "quote the path" in err


def test_set_errors_are_blamed_on_set(tmp_path: Path, config_text: str) -> None:
    file = tmp_path / "ok.yaml"
    file.write_text(config_text)
    err = _refused(_kdforge("search", str(file), "--set", "search.epochs=many", cwd=tmp_path))
    assert "error: --set search.epochs: search.epochs: expected a number" in err
    assert str(file) not in err
    err = _refused(_kdforge("search", str(file), "--set", "search.lr={low: 1", cwd=tmp_path))
    assert "error: --set search.lr: invalid YAML" in err


def test_tracking_store_in_a_missing_folder_is_made_and_said(tmp_path: Path) -> None:
    from kdforge.tracking.store import check_tracking_uri

    missing = tmp_path / "no-such-folder" / "mlflow.db"
    lines: list[str] = []
    check_tracking_uri(f"sqlite:///{missing}", emit=lines.append)
    assert missing.parent.is_dir() and not missing.exists()
    assert lines == [
        f"tracking: created folder {missing.parent} for a new MLflow store (sqlite:///{missing})"
    ]


@pytest.mark.parametrize(
    "content", [b"this is not a database" * 50, b"SQLite format 3\x00" + b"\xff" * 4000]
)
def test_a_corrupt_store_fails_before_any_work(
    tmp_path: Path, config_text: str, content: bytes
) -> None:
    file = tmp_path / "ok.yaml"
    file.write_text(config_text)  # its teacher does not even exist: nothing may reach it
    (tmp_path / "mlflow.db").write_bytes(content)
    done = _kdforge("search", str(file), cwd=tmp_path)
    err = _refused(done)
    assert "is not a readable SQLite database" in err and "hint: restore it" in err
    assert "sqlalchemy" not in err.lower() and "teacher" not in done.stdout
    assert not (tmp_path / "runs").exists()


def test_plugin_param_errors_name_the_file_or_the_set_key(tmp_path: Path) -> None:
    """A plugin checks its own params when the search plans; the error still names its source."""
    raw = tiny_search_config(tmp_path / "teacher.pt", tmp_path)
    raw["student"]["params"]["max_depth"] = "x"
    file = tmp_path / "search.yaml"
    file.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_search_config(file)
    expected = rf"^{file}: search_space 'mlp': student.params.max_depth"
    with pytest.raises(ConfigError, match=expected):
        instantiate("search_space", config.student, "student")
    raw["student"]["params"]["max_depth"] = 2
    file.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = load_search_config(file, {"student.params.max_width": "wide"})
    with pytest.raises(ConfigError, match=r"^search_space 'mlp': --set student.params.max_width"):
        instantiate("search_space", config.student, "student")
