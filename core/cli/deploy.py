"""``kdforge serve MODEL`` and ``kdforge quantize SEARCH_DIR``."""

from __future__ import annotations

import argparse
from typing import Any

from kdforge.config import validate_config
from kdforge.config.quantize_settings import QuantizeSettings

__all__ = ["add_commands"]


def _cmd_serve(args: argparse.Namespace) -> int:
    from kdforge.deploy.serve import check_servable, resolve_target, serve_mlflow

    target = resolve_target(args.model, alias=args.alias, tracking_uri=args.tracking_uri)
    if not args.ray:
        check_servable(target, trust_pickle=args.trust_pickle)
        return serve_mlflow(
            target,
            host=args.host,
            port=args.port or 5000,
            workers=args.workers,
            max_rows=args.max_batch_size,
            max_body_mb=args.max_body_mb,
            trust_pickle=args.trust_pickle,
        )
    # The optional [serve] extra (Ray Serve, starlette): imported only with --ray.
    from kdforge.deploy.ray_serve_app import RayServeSettings, serve_ray

    settings = RayServeSettings(
        max_batch_size=args.max_batch_size,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        num_cpus=args.replica_cpus,
    )
    # Ray Serve replicas only ever load ONNX (fetch_onnx_model): no pickle switch there.
    check_servable(target)
    port = args.port or 8000
    return serve_ray(target, host=args.host, port=port, settings=settings, address=args.address)


def _cmd_quantize(args: argparse.Namespace) -> int:
    settings = None
    if args.mode is not None:
        raw = {
            "mode": args.mode,
            "max_accuracy_drop": args.max_accuracy_drop,
            "calibration_samples": args.calibration_samples,
            "alias": args.alias or None,
        }
        settings = validate_config(raw, QuantizeSettings, source="kdforge quantize options")
    from kdforge.export.quantize import quantize_search_dir  # imports onnxruntime: only now

    quantize_search_dir(
        args.search_dir, settings, tracking_uri=args.tracking_uri, register=not args.no_register
    )
    return 0


def add_commands(sub: Any) -> None:
    """Add ``serve`` and ``quantize`` to the CLI's subcommands."""
    serve = sub.add_parser("serve", help="serve a registered student over HTTP (MLflow/Ray Serve)")
    serve.add_argument(
        "model", help="models:/NAME@ALIAS (or another model URI), a registered name or a search dir"
    )
    serve.add_argument("--alias", default="champion", help="alias served for a bare NAME")
    serve.add_argument("--tracking-uri", help="MLflow tracking URI holding the registry")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: all)")
    serve.add_argument("--port", type=int, help="port (default 5000, or 8000 with --ray)")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn workers (MLflow server)")
    serve.add_argument("--ray", action="store_true", help="serve with Ray Serve (autoscaling)")
    serve.add_argument(
        "--trust-pickle",
        action="store_true",
        help="serve a model kdforge cannot check is code-free (a pickled or custom-code "
        "model: its code runs in the server; only if you trust it)",
    )
    serve.add_argument("--address", help="Ray cluster address to join (--ray; default: local Ray)")
    serve.add_argument(
        "--max-batch-size", type=int, default=1024, help="rows per request; more -> 413"
    )
    serve.add_argument(
        "--max-body-mb",
        type=float,
        default=16.0,
        help="MLflow server: request body limit in MB; more -> 413 (--ray derives it)",
    )
    serve.add_argument("--min-replicas", type=int, default=1, help="--ray: autoscaling minimum")
    serve.add_argument("--max-replicas", type=int, default=4, help="--ray: autoscaling maximum")
    serve.add_argument("--replica-cpus", type=float, default=1.0, help="--ray: CPUs per replica")
    serve.set_defaults(func=_cmd_serve)

    quantize = sub.add_parser("quantize", help="int8-quantize a search's ONNX student")
    quantize.add_argument("search_dir", help="a finished search folder")
    quantize.add_argument(
        "--mode", choices=["dynamic", "static"], help="overrides the config's quantize.mode"
    )
    quantize.add_argument("--max-accuracy-drop", type=float, default=0.01, help="with --mode")
    quantize.add_argument("--calibration-samples", type=int, default=256, help="with --mode static")
    quantize.add_argument("--alias", default="int8", help="with --mode: alias of the new version")
    quantize.add_argument("--tracking-uri", help="MLflow tracking URI (overrides tracking.uri)")
    quantize.add_argument("--no-register", action="store_true", help="measure and report only")
    quantize.set_defaults(func=_cmd_quantize)
