"""Benchmark: what each student objective costs to measure, side by side.

One process, no Ray. For one sampled architecture per built-in space (digits-shaped
inputs, tokens for the transformer) it times, after one warm-up of each step:

* ``stats``: parameters + MACs (FlopCounterMode) + size in bytes, as every trial does
  before training;
* ``export``: the ONNX export (torch.export-based) that latency needs;
* ``timing``: onnxruntime CPU latency at batch 1 and 32 (median of 30, 5 warm-up);

and prints the ratio (export + timing) / stats, the reason latency is measured per
trial only when an objective or a constraint needs it. It also repeats the latency
measurement to show its spread (median of medians, min-max)::

    python benchmarks/objectives_cost.py
    python benchmarks/objectives_cost.py --repeats 50 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from kdforge.data import DataInfo
from kdforge.objectives.costs import example_input, measure_onnx_latency, model_stats
from kdforge.plugin_host.manager import get_registry
from kdforge.plugins.exporters.onnx import OnnxExporter

IMAGE = DataInfo(name="digits", input_shape=(1, 8, 8), num_classes=10)
TOKENS = DataInfo(
    name="tokens", input_shape=(32,), num_classes=4, input_dtype="int64", vocab_size=1000
)

#: (space, arch, data): mid-sized points of each space.
MODELS: list[tuple[str, dict[str, Any], DataInfo]] = [
    ("mlp", {"depth": 2, "width_0": 128, "width_1": 64}, IMAGE),
    ("cnn", {"depth": 2, "channels_0": 16, "channels_1": 32, "kernel": 3}, IMAGE),
    (
        "resnet",
        {"stages": 2, "blocks_0": 2, "blocks_1": 2, "width_0": 16, "width_1": 32, "kernel": 3},
        IMAGE,
    ),
    ("transformer", {"layers": 2, "hidden": 64, "heads": 4, "ffn": 128}, TOKENS),
]


def _timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    """Print the cost table and the latency spread."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per latency")
    parser.add_argument("--rounds", type=int, default=3, help="latency measurements per model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = get_registry()
    print(f"torch {torch.__version__}, 1 torch thread, onnxruntime 1 thread")
    header = (
        f"{'space':<12}{'params':>9}{'MACs':>11}{'stats ms':>10}{'export ms':>11}"
        f"{'timing ms':>11}{'ratio':>8}{'lat@1 ms (min-max)':>24}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as folder:
        for name, arch, info in MODELS:
            space = registry.get("search_space", name).cls()
            model = space.build(arch, info).eval()
            model_stats(model, info)  # warm-up (first use imports the dispatcher machinery)
            stats_s, stats = _timed(lambda m=model, i=info: model_stats(m, i))
            example = example_input(info, 8)
            path = Path(folder) / f"{name}.onnx"
            OnnxExporter().export(model, example, path)  # warm-up
            export_s, _ = _timed(lambda m=model, e=example, p=path: OnnxExporter().export(m, e, p))
            medians = []
            timing_s = 0.0
            for _ in range(args.rounds):
                seconds, result = _timed(
                    lambda p=path, e=example: measure_onnx_latency(
                        p, e, batch_size=32, repeats=args.repeats, warmup=5
                    )
                )
                timing_s += seconds / args.rounds
                medians.append(result.latency_ms)
            ratio = (export_s + timing_s) / stats_s
            spread = f"{statistics.median(medians):.3f} ({min(medians):.3f}-{max(medians):.3f})"
            print(
                f"{name:<12}{stats['params']:>9,}{stats['macs']:>11,}{stats_s * 1e3:>10.1f}"
                f"{export_s * 1e3:>11.0f}{timing_s * 1e3:>11.0f}{ratio:>7.0f}x{spread:>24}"
            )


if __name__ == "__main__":
    main()
