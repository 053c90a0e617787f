"""Int8 quantization: float vs dynamic vs static, for a student-size and a teacher-size MLP.

Exports two MLPs trained briefly on digits (the digits student's shape, 64-32-10, and
the demo teacher's, 64-1024-512-256-10) with kdforge's ``onnx`` exporter, quantizes each
with :func:`kdforge.export.quantize.quantize_onnx` (dynamic, and static calibrated on 256
training inputs) and measures all three side by side with
:func:`kdforge.export.quantize.measure_models` (one onnxruntime thread, interleaved calls).

    python benchmarks/quantize_int8.py [--runs 2000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from kdforge.config import PluginRef
from kdforge.export.quantize import calibration_inputs, measure_models, quantize_onnx
from kdforge.plugin_host.resolve import instantiate
from kdforge.training.trainer import TrainSettings, train_model

SHAPES = {
    "student 64-32-10": {"depth": 1, "width_0": 32, "dropout": 0.0},
    "teacher 64-1024-512-256-10": {
        "depth": 3,
        "width_0": 1024,
        "width_1": 512,
        "width_2": 256,
        "dropout": 0.0,
    },
}


def main() -> None:
    """Train, export, quantize and measure both shapes; print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="timed single-row calls per model")
    args = parser.parse_args()
    splits = instantiate("dataset", PluginRef(name="digits"), "dataset").load(0)
    space = instantiate("search_space", PluginRef(name="mlp"), "student")
    exporter = instantiate("exporter", PluginRef(name="onnx"), "export.exporter")
    calibration = calibration_inputs(splits, 256, 0)
    x, y = splits.test.x.numpy(), splits.test.y.numpy()
    with tempfile.TemporaryDirectory(prefix="kdforge-q-") as tmp:
        for label, arch in SHAPES.items():
            torch.manual_seed(0)
            model = space.build(arch, splits.info)
            settings = TrainSettings(epochs=5, lr=3e-3)
            train_model(
                model,
                x=splits.train.x,
                y=splits.train.y,
                val_x=splits.val.x,
                val_y=splits.val.y,
                settings=settings,
            )
            paths = {"float": Path(tmp) / f"{len(arch)}-float.onnx"}
            exporter.export(model.eval(), splits.test.x[:64], paths["float"])
            for mode in ("dynamic", "static"):
                paths[mode] = Path(tmp) / f"{len(arch)}-{mode}.onnx"
                quantize_onnx(paths["float"], paths[mode], mode, calibration)
            result = measure_models(paths, x, y, args.runs)
            base = result["float"]
            print(f"{label} ({sum(p.numel() for p in model.parameters()):,} parameters)")
            for name, r in result.items():
                speed = base["latency_ms_p50"] / r["latency_ms_p50"]
                batch = r["rows_per_s"] / base["rows_per_s"]
                size = base["size_bytes"] / r["size_bytes"]
                print(
                    f"  {name:8s} acc={r['test_acc']:.4f}  "
                    f"p50={r['latency_ms_p50'] * 1000:7.1f} us (x{speed:.2f})  "
                    f"batch-256 {r['rows_per_s']:>10,.0f} rows/s (x{batch:.2f})  "
                    f"size {r['size_bytes']:>9,d} B (x{size:.2f} smaller)"
                )


if __name__ == "__main__":
    main()
