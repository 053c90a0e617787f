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
