"""A full disk is reported as such, in one line with exit status 2, wherever it happens."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from kdforge.errors import DiskFullError, disk_full_error


def test_disk_full_is_found_through_causes_and_messages() -> None:
    import errno

    inner = OSError(errno.ENOSPC, "No space left on device", "/data/x")
    try:
        try:
            raise inner
        except OSError as exc:
            raise EOFError("unexpected end") from exc
    except EOFError as outer:
        found = disk_full_error(outer)
    assert isinstance(found, DiskFullError) and "/data/x" in str(found)
    assert disk_full_error(RuntimeError("OSError: [Errno 28] No space left on device")) is not None
    assert disk_full_error(EOFError("truncated")) is None


def test_train_teacher_on_a_full_disk_says_so_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "teacher.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "dataset": {"name": "digits"},
                "architecture": {"name": "mlp", "params": {"depth": 1, "width_0": 16}},
                "training": {"epochs": 1},
                "output": str(tmp_path / "t.pt"),
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            }
        )
    )
    # Every torch.save hits a full disk (what RLIMIT/tmpfs would need root or luck for).
    full = (
        "import errno, sys, torch\n"
        "def save(*a, **k):\n"
        "    raise OSError(errno.ENOSPC, 'No space left on device', 't.pt.tmp')\n"
        "torch.save = save\n"
        "from kdforge.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", full, "train-teacher", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error: the disk is full") and "t.pt.tmp" in lines[0]
    assert lines[1].startswith("hint: free space") and len(lines) == 2, done.stderr
