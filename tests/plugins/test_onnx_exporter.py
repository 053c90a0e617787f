"""The ONNX exporter: dynamic batch, parity with PyTorch in onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kdforge.data import DataInfo
from kdforge.plugins.exporters.onnx import OnnxExporter
from kdforge.search_spaces.cnn import CNNSpace


def test_export_cnn_with_dynamic_batch(tmp_path: Path) -> None:
    import onnxruntime as ort

    info = DataInfo(name="t", input_shape=(1, 8, 8), num_classes=10)
    torch.manual_seed(0)
    model = CNNSpace().build({"depth": 2, "channels_0": 4, "channels_1": 8, "kernel": 3}, info)
    model.eval()
    example = torch.randn(16, 1, 8, 8)
    result = OnnxExporter().export(model, example, tmp_path / "m.onnx")
    assert result.path.exists() and result.max_abs_diff < 1e-4
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for batch in (1, 37):
        x = torch.randn(batch, 1, 8, 8)
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)


def test_small_model_is_one_self_contained_file(tmp_path: Path, monkeypatch) -> None:
    """student.onnx works when copied on its own: no student.onnx.data beside it.

    Above the size threshold (lowered here to force it) the weights go to ``.data``.
    """
    import onnxruntime as ort

    from kdforge.plugins.exporters import onnx as onnx_exporter

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    example = torch.randn(4, 8)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.onnx.data").write_bytes(b"stale")  # from an earlier, larger export
    result = OnnxExporter().export(model, example, tmp_path / "a" / "m.onnx")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["m.onnx"]
    moved = tmp_path / "elsewhere.onnx"
    result.path.rename(moved)
    session = ort.InferenceSession(str(moved), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(
            session.run(None, {"input": example.numpy()})[0], model(example).numpy(), atol=1e-5
        )

    monkeypatch.setattr(onnx_exporter, "SELF_CONTAINED_BYTES", 1)
    big = OnnxExporter().export(model, example, tmp_path / "b" / "m.onnx")
    assert (tmp_path / "b" / "m.onnx.data").is_file() and big.max_abs_diff < 1e-5


class _PerPosition(torch.nn.Module):
    """Token ids (n, T) -> logits (n, T, V), like a language model (no position limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = torch.nn.Embedding(20, 6)
        self.out = torch.nn.Linear(6, 20)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(ids)))


class _Pooled(_PerPosition):
    """Token ids (n, T) -> logits (n, V): one answer per row."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids).mean(dim=1)


def test_per_position_student_gets_a_dynamic_sequence_axis(tmp_path: Path) -> None:
    import onnxruntime as ort

    from kdforge.plugins.exporters.onnx import OnnxParams

    torch.manual_seed(0)
    ids = torch.randint(0, 20, (8, 6))
    for model, dynamic in ((_PerPosition().eval(), True), (_Pooled().eval(), False)):
        path = tmp_path / f"{type(model).__name__}.onnx"
        assert OnnxExporter().export(model, ids, path).max_abs_diff < 1e-5
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        shape = session.get_inputs()[0].shape
        assert isinstance(shape[1], str) == dynamic, shape
        if dynamic:
            longer = torch.randint(0, 20, (3, 11))
            got = session.run(None, {"input": longer.numpy()})[0]
            with torch.no_grad():
                np.testing.assert_allclose(got, model(longer).numpy(), atol=1e-5)
    fixed = OnnxExporter(OnnxParams(sequence_axis=False))
    fixed.export(_PerPosition().eval(), ids, tmp_path / "fixed.onnx")
    session = ort.InferenceSession(str(tmp_path / "fixed.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1] == 6
