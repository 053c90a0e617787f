"""A Ray Tune trial trained by several data-parallel workers (DDP or FSDP).

With ``search.workers_per_trial`` (or ``gpus_per_trial``) above 1 a trial reserves one
placement-group bundle per worker (``cpus_per_trial`` CPUs and its whole GPUs each).
The trial's own process is rank 0: it builds and measures the student as a
single-process trial does, starts the other ranks as Ray tasks in the trial's other
bundles, joins them in a ``torch.distributed`` process group (gloo on CPU, NCCL on
GPU) and trains its share of every batch like them (:mod:`kdforge.training.distributed`).
Rank 0 alone reports to Tune, every epoch and with the same metrics and checkpoint as
:func:`kdforge.search.trial.run_trial`, so ASHA stops a multi-worker trial like any
other: Tune ends the trial's process, and the tasks it started are cancelled with it.

Why not a Ray Train ``TorchTrainer`` per trial: Ray Train V2 (the default in Ray 2.60)
runs its workers in a placement group of its own, outside the resources Tune reserved
for the trial, reports checkpoints to Tune only as a path in Train's own storage
(``TuneReportCallback``), and a search of such trials with ASHA did not finish on this
project's 2-CPU test machine. Tasks in the trial's own bundles keep Tune's resource
accounting, its checkpoints and its stopping as they are.
"""

from __future__ import annotations

import datetime
import socket
from dataclasses import dataclass
from typing import Any, Literal

import ray
import torch
import torch.distributed as dist
from ray import tune
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from kdforge.config import SearchConfig
from kdforge.search.trial import (
    EpochReporter,
    PreparedTrial,
    TrialPayload,
    failed_result,
    prepare_trial,
    run_trial,
    split_config,
    start_progress,
    train_prepared,
    trial_device,
    trial_seed,
)
from kdforge.training.distributed import DataParallel, model_state
from kdforge.training.evaluate import count_parameters

__all__ = [
    "ParallelSpec",
    "parallel_spec",
    "run_distributed_trial",
    "trial_resources",
    "trial_trainable",
]

#: How long a worker waits for the others in one collective before the trial fails.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class ParallelSpec:
    """How a multi-worker trial runs: workers, resources per worker, DDP or FSDP."""

    workers: int
    cpus: float
    gpus: float
    mode: Literal["ddp", "fsdp"] = "ddp"


def parallel_spec(config: SearchConfig) -> ParallelSpec:
    """The search's trial layout (``search.workers_per_trial``, ``gpus_per_trial``, ...)."""
    settings = config.search
    workers = settings.trial_workers
    return ParallelSpec(
        workers=workers,
        cpus=settings.cpus_per_trial,
        gpus=settings.gpus_per_trial / workers,
        mode=settings.parallel,
    )


def trial_resources(spec: ParallelSpec) -> dict[str, float] | tune.PlacementGroupFactory:
    """What Tune reserves per trial: one bundle per worker, packed on few nodes."""
    if spec.workers == 1:
        return {"cpu": spec.cpus, "gpu": spec.gpus}
    bundle = {"CPU": spec.cpus, **({"GPU": spec.gpus} if spec.gpus else {})}
    return tune.PlacementGroupFactory([dict(bundle) for _ in range(spec.workers)], strategy="PACK")


def trial_trainable(config: SearchConfig, payload: TrialPayload) -> Any:
    """The Tune trainable of the search's trials, with its resources and payload."""
    spec = parallel_spec(config)
    if spec.workers == 1:
        trainable = tune.with_parameters(run_trial, payload=payload)
    else:
        trainable = tune.with_parameters(run_distributed_trial, payload=payload, spec=spec)
    return tune.with_resources(trainable, trial_resources(spec))


def run_distributed_trial(
    config: dict[str, Any], payload: TrialPayload, spec: ParallelSpec
) -> None:
    """Ray Tune function trainable: distill one sampled student with ``spec.workers`` workers.

    Reports exactly what :func:`kdforge.search.trial.run_trial` reports, plus
    ``workers``, ``parallel`` and ``train_rows_worker_<rank>`` (rows each worker trained on
    in the epoch). An error on any worker ends the trial with a ``failed`` result.
    """
    progress = start_progress(payload.metric)
    try:
        _lead(config, payload, spec, progress)
    except (StopIteration, GeneratorExit):
        raise
    except Exception as exc:
        tune.report(failed_result(exc, progress))


def _lead(
    config: dict[str, Any], payload: TrialPayload, spec: ParallelSpec, progress: dict[str, Any]
) -> None:
    prepared = prepare_trial(config, payload, progress)
    if prepared is None:
        return  # rejected by a limit: reported, nothing trained
    address = f"tcp://{ray.util.get_node_ip_address()}:{_free_port()}"
    group = ray.util.get_current_placement_group()
    shared = ray.put(payload)
    refs = [
        _follow.options(
            num_cpus=spec.cpus,
            num_gpus=spec.gpus,
            max_retries=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                group, placement_group_bundle_index=rank
            )
            if group is not None
            else None,
        ).remote(config, shared, spec, rank, address)
        for rank in range(1, spec.workers)
    ]
    try:
        parallel = _join(spec, 0, address, prepared.device)
        reporter = EpochReporter(
            payload,
            prepared,
            progress,
            state=lambda model: model_state(model, parallel),
            extra={"workers": spec.workers, "parallel": spec.mode},
        )
        try:
            _train(payload, prepared, parallel, reporter)
        finally:
            dist.destroy_process_group()
        ray.get(refs)
    except Exception as exc:
        # A worker's own error says more than the broken collective it left behind.
        failed = _worker_error(refs)
        if isinstance(failed, ray.exceptions.RayTaskError) and isinstance(
            failed.cause, BaseException
        ):
            # Raised as the worker's own exception; Ray's error, chained, keeps its
            # traceback for the failure file.
            raise failed.cause from failed
        if failed is not None:
            raise failed from exc
        raise
    finally:
        # Stopped by ASHA or failed: no worker outlives its trial. Only the workers still
        # running are killed: a force-cancel of a task that already returned can kill the
        # process Ray has since given to the next trial's worker (it then dies mid-start,
        # and that trial waits at its rendezvous until the collective timeout).
        _, running = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        for ref in running:
            ray.cancel(ref, force=True)


@ray.remote(max_retries=0)
def _follow(
    config: dict[str, Any], payload: TrialPayload, spec: ParallelSpec, rank: int, address: str
) -> int:
    """Rank ``rank`` of a trial: build the same student, train its share, report nothing."""
    torch.set_num_threads(max(1, payload.threads))
    seed = trial_seed(payload.seed, config)
    torch.manual_seed(seed)  # the same initial weights as rank 0
    arch, loss_hparams, lr = split_config(config)
    model = payload.space.build(arch, payload.info)
    torch.manual_seed(seed + rank)  # but dropout masks of its own
    device = trial_device(payload.gpus)
    prepared = PreparedTrial(
        seed, arch, loss_hparams, lr, model, {}, count_parameters(model), "", device
    )
    parallel = _join(spec, rank, address, device)
    try:
        # DDP: nothing to do per epoch; FSDP: the test pass and the weights gathered
        # for rank 0 are collectives this worker must join.
        reporter = (
            EpochReporter(
                payload,
                prepared,
                {},
                state=lambda m: model_state(m, parallel),
                reports=False,
            )
            if parallel.collective_forward
            else None
        )
        _train(payload, prepared, parallel, reporter)
    finally:
        dist.destroy_process_group()
    return rank


def _train(
    payload: TrialPayload,
    prepared: PreparedTrial,
    parallel: DataParallel,
    reporter: EpochReporter | None,
) -> None:
    train_prepared(payload, prepared, reporter, parallel)


def _join(spec: ParallelSpec, rank: int, address: str, device: str) -> DataParallel:
    """Join the trial's process group as ``rank`` (NCCL with GPUs, gloo without)."""
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        torch.cuda.set_device(0)  # Ray shows each worker only its own GPUs
    dist.init_process_group(
        backend,
        init_method=address,
        rank=rank,
        world_size=spec.workers,
        timeout=COLLECTIVE_TIMEOUT,
    )
    return DataParallel(rank=rank, world_size=spec.workers, mode=spec.mode)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _worker_error(refs: list[Any]) -> BaseException | None:
    """The first error a worker raised, if one ended within a few seconds."""
    if not refs:
        return None
    done, _ = ray.wait(refs, num_returns=len(refs), timeout=5)
    for ref in done:
        try:
            ray.get(ref)
        except Exception as exc:
            return exc
    return None
