"""Serving load: the student against the teacher, both behind the same HTTP server.

Builds (or takes) a student and a teacher, registers both as ONNX models in a
temporary MLflow SQLite store, serves each in turn with ``kdforge serve`` (``mlflow
models serve``; ``--server ray`` for the Ray Serve application) on 127.0.0.1, and
fires a bounded load from a second process: ``--requests`` single-row requests over
``--concurrency`` keep-alive connections. With the MLflow server both models are up at
once and the load alternates between them in ``--rounds`` rounds. Prints p50/p99
latency and throughput for both, the teacher/student ratios, and for reference the
model-only time (one onnxruntime call on one row, in this process).

    python benchmarks/serve_load.py                       # tiny MLP student, MLP teacher
    python benchmarks/serve_load.py --search-dir kdforge-runs/digits-mlp/<timestamp>
    python benchmarks/serve_load.py --server ray --requests 2000 --concurrency 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

TEACHER_ARCH = {"depth": 3, "width_0": 1024, "width_1": 512, "width_2": 256, "dropout": 0.0}
STUDENT_ARCH = {"depth": 1, "width_0": 32, "dropout": 0.0}


def _client(port: int, requests: int, concurrency: int, rows: list[bytes]) -> dict[str, Any]:
    """The load generator (runs in its own process): latencies of every request."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "application/json"}
        for i in counter:  # next() on a shared iterator: each index is taken once
            body = rows[i % len(rows)]
            start = time.perf_counter()
            conn.request("POST", "/invocations", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors += response.status != 200

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {"latencies": latencies, "wall_s": wall, "errors": errors}


def _client_main(argv: list[str]) -> None:
    port, requests, concurrency, rows_file = int(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    rows = [line.encode() for line in Path(rows_file).read_text().splitlines()]
    _client(port, min(20, requests), concurrency, rows)  # warm-up, not recorded
    print(json.dumps(_client(port, requests, concurrency, rows)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _build_models(folder: Path, search_dir: Path | None) -> dict[str, tuple[Path, int, float]]:
    """ONNX files of student and teacher: name -> (path, parameters, test accuracy)."""
    import torch
    import yaml

    from kdforge import build_checkpoint_model, load_checkpoint
    from kdforge.config import PluginRef
    from kdforge.plugin_host.resolve import instantiate
    from kdforge.training.evaluate import evaluate
    from kdforge.training.trainer import TrainSettings, train_model

    splits = instantiate("dataset", PluginRef(name="digits"), "dataset").load(0)
    exporter = instantiate("exporter", PluginRef(name="onnx"), "export.exporter")
    models: dict[str, torch.nn.Module] = {}
    if search_dir is not None:
        config = yaml.safe_load((search_dir / "config.yaml").read_text())
        models["student"] = build_checkpoint_model(load_checkpoint(search_dir / "student.pt"))
        teacher_path = Path(config["teacher"]["params"]["path"])
        models["teacher"] = build_checkpoint_model(load_checkpoint(teacher_path))
    else:
        space = instantiate("search_space", PluginRef(name="mlp"), "student")
        for name, arch, epochs in (("student", STUDENT_ARCH, 8), ("teacher", TEACHER_ARCH, 8)):
            torch.manual_seed(0)
            model = space.build(arch, splits.info)
            train_model(
                model,
                x=splits.train.x,
                y=splits.train.y,
                val_x=splits.val.x,
                val_y=splits.val.y,
                settings=TrainSettings(epochs=epochs, lr=3e-3),
            )
            models[name] = model
    out = {}
    for name, model in models.items():
        model.eval()
        path = folder / f"{name}.onnx"
        exporter.export(model, splits.test.x[:64].float(), path)
        params = sum(p.numel() for p in model.parameters())
        out[name] = (path, params, evaluate(model, splits.test.x, splits.test.y)[0])
    return out


def _serve(model_uri: str, tracking_uri: str, server: str, port: int) -> subprocess.Popen:
    argv = [sys.executable, "-m", "kdforge.cli", "serve", model_uri, "--tracking-uri", tracking_uri]
    argv += ["--port", str(port)]
    if server == "ray":
        argv += ["--ray", "--min-replicas", "1", "--max-replicas", "1"]
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {model_uri} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                return process
        except OSError:
            time.sleep(0.3)
    _stop(process)
    raise RuntimeError(f"server for {model_uri} did not start")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _load(port: int, requests: int, concurrency: int, rows_file: Path) -> dict[str, Any]:
    """Run the client in a second process; return its raw latencies and wall time."""
    argv = [sys.executable, __file__, "--client", str(port), str(requests), str(concurrency)]
    result = subprocess.run([*argv, str(rows_file)], capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _summary(parts: list[dict[str, Any]]) -> dict[str, Any]:
    ms = np.concatenate([np.asarray(p["latencies"]) for p in parts]) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "throughput_rps": len(ms) / sum(p["wall_s"] for p in parts),
        "errors": sum(int(p["errors"]) for p in parts),
    }


def _model_only_ms(paths: dict[str, Path], x: np.ndarray, runs: int = 2000) -> dict[str, float]:
    """p50 of one onnxruntime call on one row, one thread, models interleaved."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {
        name: ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        for name, path in paths.items()
    }
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for i in range(runs):
        row = {"input": x[i % len(x) : i % len(x) + 1]}
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, row)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def main() -> None:
    """Build, register, serve and load both models; print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--server", choices=["mlflow", "ray"], default="mlflow")
    parser.add_argument("--rounds", type=int, default=4, help="alternations (mlflow server)")
    parser.add_argument("--search-dir", type=Path, help="use this search's student and teacher")
    args = parser.parse_args()

    import mlflow

    from kdforge.config import PluginRef
    from kdforge.plugin_host.resolve import instantiate
    from kdforge.tracking.registry import register_onnx
    from kdforge.tracking.store import setup_experiment

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory(prefix="kdforge-bench-") as tmp:
        folder = Path(tmp)
        tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
        models = _build_models(folder, args.search_dir)
        splits = instantiate("dataset", PluginRef(name="digits"), "dataset").load(0)
        test_x = splits.test.x.numpy()
        rows_file = folder / "rows.jsonl"
        rows_file.write_text(
            "\n".join(
                json.dumps({"inputs": test_x[i : i + 1].tolist()}) for i in range(len(test_x))
            )
        )
        setup_experiment(tracking_uri, "serve-bench")
        with mlflow.start_run():
            for name, (path, _, _) in models.items():
                register_onnx(path, name=f"bench-{name}", example=test_x[:4], alias="champion")
        parts: dict[str, list[dict[str, Any]]] = {"student": [], "teacher": []}
        uris = {name: f"models:/bench-{name}@champion" for name in parts}
        if args.server == "mlflow":
            # Both servers up at once and the load alternated in rounds, so that drift in
            # the machine's load hits both models alike.
            ports = {name: _free_port() for name in parts}
            processes = [_serve(uris[n], tracking_uri, "mlflow", ports[n]) for n in parts]
            try:
                for round_ in range(args.rounds):
                    order = list(parts) if round_ % 2 == 0 else list(parts)[::-1]
                    for name in order:
                        share = args.requests // args.rounds
                        parts[name].append(_load(ports[name], share, args.concurrency, rows_file))
            finally:
                for process in processes:
                    _stop(process)
        else:
            for name in parts:  # one Serve instance at a time: one after the other
                port = _free_port()
                process = _serve(uris[name], tracking_uri, "ray", port)
                try:
                    parts[name].append(_load(port, args.requests, args.concurrency, rows_file))
                finally:
                    _stop(process)
        results = {name: _summary(p) for name, p in parts.items()}
        compute = _model_only_ms({name: models[name][0] for name in parts}, test_x)
    print(
        f"server: {args.server}; {args.requests} single-row requests, concurrency "
        f"{args.concurrency}, load generator in a second process; {os.cpu_count()} CPUs"
    )
    header = ("model", "params", "test_acc", "p50 ms", "p99 ms", "req/s", "ort ms")
    print(
        f"{header[0]:8s} {header[1]:>10s} " + " ".join(f"{h:>8s}" for h in header[2:]) + " errors"
    )
    for name, r in results.items():
        _, params, acc = models[name]
        print(
            f"{name:8s} {params:>10,d} {acc:>8.4f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['throughput_rps']:>8.1f} {compute[name]:>8.4f} {r['errors']}"
        )
    s, t = results["student"], results["teacher"]
    print(
        f"served, teacher/student: p50 x{t['p50_ms'] / s['p50_ms']:.2f}, "
        f"p99 x{t['p99_ms'] / s['p99_ms']:.2f}; "
        f"throughput student/teacher x{s['throughput_rps'] / t['throughput_rps']:.2f}"
    )
    print(
        f"model only (onnxruntime, 1 row, 1 thread), teacher/student p50: "
        f"x{compute['teacher'] / compute['student']:.1f}; "
        f"parameters x{models['teacher'][1] / models['student'][1]:.0f}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        _client_main(sys.argv[2:])
    else:
        main()
