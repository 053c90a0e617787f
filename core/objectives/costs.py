"""What a student costs: parameters, MACs, size in bytes, and measured ONNX latency.

* ``params``: number of parameters (trainable and frozen).
* ``macs``: multiply-accumulates of one forward pass at batch 1, counted on the
  dispatched graph with :class:`torch.utils.flop_counter.FlopCounterMode` (matrix
  products, convolutions and attention; MACs = FLOPs / 2). Element-wise ops,
  normalisation and pooling are not counted, as in the usual convention.
* ``size_bytes``: bytes of the parameters and buffers (the weights a deployment
  ships, before compression).
* ``latency_ms`` / ``latency_batch_ms``: the model exported to ONNX and run with
  onnxruntime on the CPU at batch 1 and at a configured batch; median of repeated
  runs after warm-up runs that are not timed.

The first three are cheap (milliseconds) and computed for every trial; latency needs
an ONNX export (seconds), so the search measures it only where it is needed (see
``docs/search_spaces.md``).
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop

from kdforge.config.objective_settings import OBJECTIVE_MODES, LatencySettings
from kdforge.data import DataInfo, is_token_dtype
from kdforge.errors import ExportError
from kdforge.interfaces import Exporter
from kdforge.training.evaluate import count_parameters

# onnxruntime is imported inside measure_onnx_latency: this module runs in every Ray
# trial, and only trials that measure latency need it.

__all__ = [
    "OBJECTIVE_MODES",
    "LatencyResult",
    "count_macs",
    "example_input",
    "measure_latency",
    "measure_onnx_latency",
    "measure_onnx_latency_with",
    "model_size_bytes",
    "model_stats",
]

#: Objectives that need an ONNX export to be measured (OBJECTIVE_MODES lists them all).
LATENCY_OBJECTIVES = ("latency_ms", "latency_batch_ms")


def model_size_bytes(model: nn.Module) -> int:
    """Bytes of ``model``'s parameters and buffers as stored (e.g. 4 per float32)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def example_input(info: DataInfo, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """A batch of inputs shaped and typed like the dataset's (values are arbitrary).

    Token-id datasets get ids in ``[0, vocab_size)``; float datasets get uniform noise.
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, *info.input_shape)
    if is_token_dtype(info.input_dtype):
        dtype = getattr(torch, info.input_dtype.removeprefix("torch."))
        return torch.randint(
            0, max(1, info.vocab_size or 1), shape, generator=generator, dtype=dtype
        )
    return torch.rand(shape, generator=generator)


def _cpu_sdpa_flops(
    query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
) -> int:

    return int(sdpa_flop(query_shape, key_shape, value_shape))


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of ``model(example)``, counted by ``FlopCounterMode``.

    The model runs once in eval mode with gradients enabled: PyTorch's inference
    fast paths (e.g. ``nn.MultiheadAttention``'s fused kernel) would hide their
    matrix products from the counter. The CPU attention kernel is counted with
    PyTorch's own attention formula.

    Args:
        model: Any torch module.
        example: A batch of inputs; the count covers the whole batch.

    Returns:
        MACs, i.e. counted FLOPs // 2 (a Linear(64, 32) at batch 1 is 2,048).
    """

    aten = torch.ops.aten
    mapping = {}
    cpu_attention = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_attention is not None:
        mapping[cpu_attention] = _cpu_sdpa_flops
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(example)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def model_stats(model: nn.Module, info: DataInfo) -> dict[str, int]:
    """``params``, ``macs`` (batch 1) and ``size_bytes`` of a built student."""
    return {
        "params": count_parameters(model),
        "macs": count_macs(model, example_input(info, 1)),
        "size_bytes": model_size_bytes(model),
    }


@dataclass(frozen=True)
class LatencyResult:
    """Median onnxruntime CPU latencies of one exported model.

    Attributes:
        latency_ms: Median milliseconds of one batch-1 run.
        latency_batch_ms: Median milliseconds of one run at ``batch_size``.
        batch_size: The configured batch.
        onnx_bytes: Size of the ONNX file and its external weights file.
        repeats: Timed runs per batch size (after ``warmup`` untimed ones).
        warmup: Untimed runs per batch size.
        threads: onnxruntime intra-op threads.
    """

    latency_ms: float
    latency_batch_ms: float
    batch_size: int
    onnx_bytes: int
    repeats: int
    warmup: int
    threads: int

    def metrics(self) -> dict[str, float]:
        """The two latencies and the file size, keyed as objectives/metrics."""
        return {
            "latency_ms": self.latency_ms,
            "latency_batch_ms": self.latency_batch_ms,
            "onnx_bytes": float(self.onnx_bytes),
        }


def _median_ms(session: Any, feed: dict[str, Any], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - started) * 1000.0)
    return float(statistics.median(times))


def _onnx_bytes(path: Path) -> int:
    """Size of an ONNX model with its external weights file (``<name>.data``), if any."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def measure_onnx_latency(
    path: str | Path,
    example: torch.Tensor,
    *,
    batch_size: int = 32,
    repeats: int = 30,
    warmup: int = 5,
    threads: int = 1,
) -> LatencyResult:
    """Median latency of an ONNX model in onnxruntime on the CPU.

    Args:
        path: The ONNX file (one input with a dynamic batch axis).
        example: One example batch; its first row is repeated to make the batches.
        batch_size: The second batch size measured (besides 1).
        repeats: Timed runs per batch size; the median is reported.
        warmup: Untimed runs before timing (allocations, kernel selection).
        threads: onnxruntime intra-op threads (1 gives stable numbers on a busy host).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    row = example[:1].cpu()
    single = _median_ms(session, {name: row.numpy()}, repeats, warmup)
    batch = row.expand(batch_size, *row.shape[1:]).contiguous().numpy()
    batched = _median_ms(session, {name: batch}, repeats, warmup)
    return LatencyResult(
        latency_ms=single,
        latency_batch_ms=batched,
        batch_size=batch_size,
        onnx_bytes=_onnx_bytes(Path(path)),
        repeats=repeats,
        warmup=warmup,
        threads=threads,
    )


def measure_onnx_latency_with(
    path: str | Path, example: torch.Tensor, settings: LatencySettings
) -> LatencyResult:
    """:func:`measure_onnx_latency` with the batch, repeats, warm-up and threads of a
    ``latency`` config section."""
    return measure_onnx_latency(
        path,
        example,
        batch_size=settings.batch_size,
        repeats=settings.repeats,
        warmup=settings.warmup,
        threads=settings.threads,
    )


def measure_latency(
    model: nn.Module,
    info: DataInfo,
    exporter: Exporter,
    *,
    batch_size: int = 32,
    repeats: int = 30,
    warmup: int = 5,
    threads: int = 1,
    folder: str | Path | None = None,
) -> LatencyResult:
    """Export ``model`` to ONNX with ``exporter`` and measure it (see above).

    Args:
        model: The student (weights do not change its latency).
        info: The data description (input shape and dtype).
        exporter: An exporter that writes ONNX (the ``onnx`` exporter plugin).
        batch_size: The second batch size measured.
        repeats: Timed runs per batch size.
        warmup: Untimed runs per batch size.
        threads: onnxruntime intra-op threads.
        folder: Where to keep the ONNX file (default: a temporary folder, removed).

    Raises:
        ExportError: the model cannot be exported to ONNX.
    """
    example = example_input(info, max(2, min(batch_size, 8)))
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(folder or scratch) / "latency.onnx"
        # Export a copy so the caller's model keeps its train/eval mode and device.
        exported = exporter.export(copy.deepcopy(model).cpu().eval(), example, target)
        if exported.format != "onnx":
            raise ExportError(
                f"latency is measured with ONNX Runtime, but exporter {exporter.name!r} "
                f"wrote {exported.format!r}"
            )
        return measure_onnx_latency(
            exported.path,
            example,
            batch_size=batch_size,
            repeats=repeats,
            warmup=warmup,
            threads=threads,
        )


def measure_latency_with(
    model: nn.Module, info: DataInfo, settings: LatencySettings, exporter: Exporter
) -> LatencyResult:
    """:func:`measure_latency` with the batch, repeats, warm-up and threads of a
    ``latency`` config section."""
    return measure_latency(
        model,
        info,
        exporter,
        batch_size=settings.batch_size,
        repeats=settings.repeats,
        warmup=settings.warmup,
        threads=settings.threads,
    )
