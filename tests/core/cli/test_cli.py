"""The command line: plugin listing, one-line errors, exit codes, --debug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kdforge", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_plugins_lists_every_builtin() -> None:
    out = _run("plugins")
    assert out.returncode == 0, out.stderr
    for kind, name in [
        ("dataset", "digits"),
        ("teacher", "checkpoint"),
        ("search_space", "mlp"),
        ("search_space", "cnn"),
        ("loss", "hinton_kd"),
        ("exporter", "onnx"),
    ]:
        line = next(line for line in out.stdout.splitlines() if f" {name} " in f" {line} ")
        assert line.startswith(kind) and "kdforge (built-in)" in line


def test_config_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "dataset": {"name": "digits"},
                "teacher": {"name": "checkpoint", "params": {"path": "t.pt"}},
                "student": {"name": "mpl"},
            }
        )
    )
    out = _run("search", str(config), cwd=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert (
        out.stderr.splitlines()[0] == ("error: unknown search space 'mpl'; available: cnn, mlp")
        or "unknown search space 'mpl'" in out.stderr.splitlines()[0]
    )
    assert "hint: did you mean 'mlp'?" in out.stderr
    debug = _run("--debug", "search", str(config), cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_missing_teacher_file_fails_before_training(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "output_dir": str(tmp_path / "runs"),
                "dataset": {"name": "digits"},
                "teacher": {"name": "checkpoint", "params": {"path": str(tmp_path / "none.pt")}},
                "student": {"name": "mlp"},
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            }
        )
    )
    out = _run("search", str(config), cwd=tmp_path)
    assert out.returncode == 2
    assert "checkpoint not found" in out.stderr and "Traceback" not in out.stderr


def test_train_teacher_writes_a_loadable_checkpoint(tmp_path: Path) -> None:
    from kdforge import build_checkpoint_model, load_checkpoint

    config = tmp_path / "t.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "dataset": {"name": "digits"},
                "architecture": {"name": "mlp", "params": {"depth": 1, "width_0": 32}},
                "training": {"epochs": 5, "lr": 0.01},
                "output": "out/teacher.pt",
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            }
        )
    )
    out = _run("train-teacher", str(config), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "teacher saved to" in out.stdout
    payload = load_checkpoint(tmp_path / "out" / "teacher.pt")
    assert payload["meta"]["test_acc"] > 0.5
    assert build_checkpoint_model(payload)(__import__("torch").zeros(2, 1, 8, 8)).shape == (2, 10)


def test_bad_architecture_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "t.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "dataset": {"name": "digits"},
                "architecture": {"name": "mlp", "params": {"depth": 2, "width_0": 32}},
                "output": "teacher.pt",
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            }
        )
    )
    out = _run("train-teacher", str(config), cwd=tmp_path)
    assert out.returncode == 2
    assert "architecture.params" in out.stderr and "width_1" in out.stderr


def test_plugins_list_takes_a_kind_positionally(capsys) -> None:
    """`kdforge plugins list loss` (as docs/losses.md says) lists only losses."""
    from kdforge.cli import main

    for spelling in ("loss", "losses", "Loss"):
        assert main(["plugins", "list", spelling]) == 0
        rows = capsys.readouterr().out.splitlines()[1:]
        kinds = {row.split()[0] for row in rows if not row.startswith("(")}
        assert kinds == {"loss"} and any(" hinton_kd " in row for row in rows)
    assert main(["plugins", "list", "search-space"]) == 0
    assert " mlp " in capsys.readouterr().out
    assert main(["plugins", "list", "lose"]) == 2
    err = capsys.readouterr().err
    assert "unknown plugin kind 'lose'" in err and "did you mean 'loss'?" in err
    assert main(["plugins", "list", "loss", "--kind", "teacher"]) == 2
    assert "disagree" in capsys.readouterr().err
