"""examples/notebooks/distill.ipynb runs top to bottom in a headless Jupyter kernel."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "distill.ipynb"


def test_the_distill_notebook_runs_and_shows_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernel spec that starts this virtualenv's Python, whatever kernels the machine has.
    spec = tmp_path / "jupyter" / "kernels" / "kdforge-venv"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "kdforge venv", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("KDFORGE_NOTEBOOK_DIR", str(tmp_path / "work"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="kdforge-venv",
        timeout=600,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    html = "".join(str(o.get("data", {}).get("text/html", "")) for o in outputs)
    text = "".join(str(o.get("text", "")) for o in outputs)
    assert "student test acc" in html  # the result object, rendered by _repr_html_
    assert "<html" in html.lower()  # result.report() inline
    assert "compression" in text and "models:/notebook-student" in text
    assert (tmp_path / "work" / "distill.yaml").is_file()
