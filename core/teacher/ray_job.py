"""The teacher's outputs computed as a Ray job: teacher actors on the cluster's workers.

The driver cuts train(+transfer), val and test into *shards* of whole teacher batches
(``batch_size`` rows each, counted from row 0 of the split, exactly as
:func:`~kdforge.teacher.outputs.compute_teacher_outputs` batches them, so every teacher
call sees the same rows and the outputs are the same bit for bit) and hands them to a
pool of teacher actors, at most two shards per actor at a time. The driver never runs
the teacher, never needs a GPU, and never reads streamed inputs:

* **streamed inputs** (:class:`~kdforge.data.LazyInputs`: paths and settings) go to
  each actor once, and the actor reads its shards' rows itself (so the files must be
  reachable from the workers, as for the trials);
* **in-memory inputs** are already in the driver; each shard's rows are copied into
  the object store when the shard is sent, so at most two shards per actor are there
  at once.

Only the outputs (logits, and training-row features for feature losses) come back to
the driver, which writes the cache entry (:mod:`kdforge.teacher.cache`).

**How the teacher reaches the workers.** Each actor rebuilds the teacher from its
plugin reference (the ``teacher:`` config section: plugin name and params), resolved by
:func:`kdforge.plugin_host.resolve.instantiate` and loaded on the worker as in the
driver (files read with ``weights_only=True``); no pickled model travels. Its
:meth:`~kdforge.interfaces.Teacher.fingerprint` must equal the driver's (the same
files on every node), else the job stops with an error naming the node. Teachers that
live only in the driver process (the ``in_memory`` plugin of :func:`kdforge.distill`)
cannot be rebuilt elsewhere: their loaded object, kdforge's own in-process object and
not a file, is sent through Ray's object store, as the online teacher already is.

**Why actors and not Ray Data.** ``ray.data.Dataset.map_batches`` with a callable class
would pool the actors the same way, but it re-blocks rows on its own boundaries (the
teacher would see other batches than the local path, so not the same outputs bit for
bit), needs ragged tensor columns for the last batch of each split and per-feature
columns, and brings its own progress bars and executor threads into the search
process. kdforge's inputs are not Ray datasets either (they are kdforge tensors and
:class:`~kdforge.data.LazyInputs`). A few actors fed whole batches keep the batching
exact, the code short, and the progress kdforge's (:func:`kdforge.progress.phase`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from kdforge import progress
from kdforge.batching import TensorInputs, is_lazy, iter_batches
from kdforge.config import PluginRef
from kdforge.config.teacher_inference_settings import TeacherInferenceSettings
from kdforge.data import DataSplits, Inputs, LazyInputs
from kdforge.errors import KDForgeError, PluginError, SearchError, first_line
from kdforge.interfaces import LossNeeds, Teacher
from kdforge.plugin_host.resolve import instantiate
from kdforge.teacher.outputs import TeacherOutputs, training_inputs
from kdforge.wording import plural

# Ray is imported inside the functions that use it: the local path (every search on
# one machine) never imports it for the teacher.

__all__ = ["PROCESS_LOCAL_TEACHERS", "RayJobReport", "TeacherWorker", "run_teacher_job"]

#: Teacher plugins whose model lives only in the driver process: sent as the loaded
#: object (kdforge's own in-process object) instead of being rebuilt on the workers.
PROCESS_LOCAL_TEACHERS = frozenset({"in_memory"})

#: How long the actors may take to be placed and to load the teacher.
PLACEMENT_TIMEOUT_S = 600.0
#: Shards in flight per actor: one running, one waiting, so an actor is never idle.
_DEPTH = 2
#: Teacher batches per shard at most (fewer when there are few batches per actor).
_MAX_SHARD_BATCHES = 16


@dataclass
class RayJobReport:
    """What one Ray teacher job did (also summarised in one emitted line).

    Attributes:
        actors: Actors that ran shards.
        nodes: Ray node id of each such actor.
        devices: Device each actor ran the teacher on (``cpu``, ``cuda``).
        rows: Rows run through the teacher.
        shards: Shards the rows were cut into.
        startup_s: Seconds until the actors were placed and had loaded the teacher.
        seconds: Seconds from the first shard sent to the last result back.
    """

    actors: int = 0
    nodes: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    rows: int = 0
    shards: int = 0
    startup_s: float = 0.0
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        """Throughput of the inference itself (actor start-up excluded)."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Shard:
    split: str
    start: int
    stop: int
    features: bool


class TeacherWorker:
    """One teacher actor: the teacher rebuilt (or received) once, then shards of batches.

    Construction never raises: a failure is kept and reported by :meth:`ready`, so the
    driver can name the node it happened on.

    Args:
        source: The teacher's plugin reference (``{"name", "params"}``) to rebuild it
            from, or the loaded teacher itself (process-local teachers only).
        lazy_inputs: The streamed splits' inputs by split name (read here).
        needs: What the loss reads (features of the training rows or not).
        batch_size: Rows per teacher call.
    """

    def __init__(
        self,
        source: dict[str, Any] | Teacher,
        lazy_inputs: dict[str, LazyInputs],
        needs: LossNeeds,
        batch_size: int,
    ) -> None:
        import ray

        self._inputs = lazy_inputs
        self._needs = needs
        self._batch_size = batch_size
        self._node = ray.get_runtime_context().get_node_id()
        self._device = torch.device("cpu")
        self._error: str | None = None
        self._fingerprint = ""
        try:
            if isinstance(source, Teacher):
                teacher = source
            else:
                teacher = instantiate("teacher", PluginRef.model_validate(source), "teacher")
                teacher.load()
            self._teacher = teacher
            self._fingerprint = teacher.fingerprint()
            module = teacher.torch_module()
            # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPUs: cuda:0 is one of them.
            if ray.get_gpu_ids() and torch.cuda.is_available() and module is not None:
                self._device = torch.device("cuda")
                module.to(self._device)
        except Exception as exc:  # reported by ready(), with the node it happened on
            self._error = f"{type(exc).__name__}: {first_line(exc)}"

    def ready(self) -> dict[str, str | None]:
        """``{"node", "device", "fingerprint", "error"}`` once the teacher is loaded."""
        return {
            "node": self._node,
            "device": self._device.type,
            "fingerprint": self._fingerprint,
            "error": self._error,
        }

    def run(
        self, split: str, start: int, stop: int, rows: torch.Tensor | None, features: bool
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor], int]:
        """Teacher outputs of rows ``start:stop`` of ``split``, batch by batch.

        Args:
            split: The split's name.
            start: First row (a multiple of the batch size).
            stop: One past the last row.
            rows: The rows themselves (in-memory inputs), or None to read them from the
                split's streamed inputs.
            features: Also return the named features the loss reads.

        Returns:
            ``(logits or None when the teacher has none, features, teacher calls)``,
            on the CPU as float32, like the local path.
        """
        logits: list[torch.Tensor] = []
        tapped: dict[str, list[torch.Tensor]] = {}
        no_logits = False
        calls = 0
        with torch.no_grad():
            for batch in self._batches(split, start, stop, rows):
                batch = batch.to(self._device)
                if features:
                    output = self._teacher.predict_features(batch, self._needs.teacher_layers)
                    for name, value in output.features.items():
                        tapped.setdefault(name, []).append(value.detach().float().cpu())
                else:
                    output = self._teacher.predict(batch)
                calls += 1
                if output.logits is None:
                    no_logits = True
                else:
                    logits.append(output.logits.detach().float().cpu())
        merged = {name: torch.cat(parts) for name, parts in tapped.items()}
        return (None if no_logits else torch.cat(logits)), merged, calls

    def _batches(
        self, split: str, start: int, stop: int, rows: torch.Tensor | None
    ) -> Iterator[torch.Tensor]:
        size = self._batch_size
        if rows is not None:
            for _, batch in iter_batches(rows, size):
                yield batch
            return
        inputs = self._inputs[split]
        for first in range(start, stop, size):
            # The same read_batch calls as iter_batches makes in the driver.
            yield inputs.read_batch(list(range(first, min(first + size, stop))))


def _plan_actors(settings: TeacherInferenceSettings, batches: int) -> tuple[int, float, float]:
    """``(actors, cpus, gpus)`` per actor, from the settings and the cluster's resources."""
    import ray

    resources = ray.cluster_resources()
    cluster_gpus = float(resources.get("GPU", 0.0))
    gpus = settings.gpus_per_actor
    if gpus is None:
        gpus = 1.0 if cluster_gpus >= 1 else 0.0
    cpus = settings.cpus_per_actor
    if settings.actors is not None:
        actors = settings.actors
    elif gpus > 0:
        actors = int(cluster_gpus // gpus)
    else:
        actors = int(float(resources.get("CPU", 0.0)) // cpus)
    return max(1, min(actors, batches)), cpus, gpus


def _source_of(teacher: Teacher, teacher_ref: PluginRef | None) -> dict[str, Any] | Teacher:
    if teacher_ref is None or teacher.name in PROCESS_LOCAL_TEACHERS:
        return teacher
    return {"name": teacher_ref.name, "params": dict(teacher_ref.params)}


def _in_memory(x: Inputs) -> torch.Tensor | None:
    """The tensor behind in-memory inputs (also behind ``storage: stream`` wrappers)."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, TensorInputs):  # read_rows indexes it; never augmented here
        return x.tensor
    return None


def _start_actors(
    source: dict[str, Any] | Teacher,
    lazy: dict[str, LazyInputs],
    needs: LossNeeds,
    settings: TeacherInferenceSettings,
    plan: tuple[int, float, float],
    fingerprint: str,
    emit: Callable[[str], None],
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Start the actors, wait until they are placed and loaded; kill the unplaced ones."""
    import ray

    count, cpus, gpus = plan
    # Typed Any: Ray's stubs type actor handles per method, not what .remote() returns.
    worker_cls: Any = ray.remote(TeacherWorker).options(num_cpus=cpus, num_gpus=gpus)
    # One copy of the shared arguments in the object store, not one per actor.
    source_ref, lazy_ref = ray.put(source), ray.put(lazy)
    actors: list[Any] = [
        worker_cls.remote(source_ref, lazy_ref, needs, settings.batch_size) for _ in range(count)
    ]
    waiting = {actor.ready.remote(): actor for actor in actors}
    done, _ = ray.wait(list(waiting), num_returns=len(waiting), timeout=PLACEMENT_TIMEOUT_S)
    placed, infos = [], []
    for ref in done:
        info = ray.get(ref)
        if info["error"]:
            for actor in actors:
                ray.kill(actor)
            raise PluginError(
                f"teacher could not be loaded on Ray node {info['node']}: {info['error']}",
                hint="the teacher's files must be at the same path on every node, and its "
                "plugin installed there; or set teacher_inference.where: local",
            )
        if info["fingerprint"] != fingerprint:
            for actor in actors:
                ray.kill(actor)
            raise PluginError(
                f"the teacher loaded on Ray node {info['node']} differs from the driver's "
                f"(fingerprint {info['fingerprint']} != {fingerprint})",
                hint="the teacher's files must be the same on every node",
            )
        placed.append(waiting[ref])
        infos.append(info)
    for ref, actor in waiting.items():
        if ref not in done:
            ray.kill(actor)
    if not placed:
        needed = f"{cpus:g} CPU" + (f" + {gpus:g} GPU" if gpus else "")
        raise SearchError(
            f"no teacher actor ({needed} each) could be placed on the Ray cluster in "
            f"{PLACEMENT_TIMEOUT_S:.0f}s (it has {ray.cluster_resources()})",
            hint="lower teacher_inference.cpus_per_actor / gpus_per_actor, or set "
            "teacher_inference.where: local",
        )
    if len(placed) < count:
        emit(f"teacher outputs: {len(placed)} of {count} teacher actors placed; going on with them")
    return placed, infos


def run_teacher_job(
    teacher: Teacher,
    splits: DataSplits,
    settings: TeacherInferenceSettings,
    *,
    teacher_ref: PluginRef | None = None,
    needs: LossNeeds | None = None,
    emit: Callable[[str], None] = print,
) -> tuple[TeacherOutputs, RayJobReport]:
    """Compute the teacher's outputs on the connected Ray cluster (``ray.init`` done).

    Args:
        teacher: The teacher loaded in the driver (its fingerprint is the reference;
            it runs here only when it is process-local).
        splits: The data.
        settings: The ``teacher_inference`` section (batch size, actors, resources).
        teacher_ref: The ``teacher:`` config section the workers rebuild the teacher
            from; None sends the loaded teacher instead.
        needs: What the loss reads (default: logits only).
        emit: Where progress lines go.

    Returns:
        The outputs, equal to :func:`~kdforge.teacher.outputs.compute_teacher_outputs`'s
        with the same batch size, and what the job did.

    Raises:
        PluginError: the teacher cannot be loaded on a worker, differs there from the
            driver's, or returns no logits for a loss that reads them.
        SearchError: no actor could be placed on the cluster.
    """
    import ray

    needs = needs or LossNeeds()
    splits = splits.for_teacher()  # the teacher reads its own view when it has one
    size = settings.batch_size
    named = {"train": training_inputs(splits).x, "val": splits.val.x, "test": splits.test.x}
    batches = sum(math.ceil(len(x) / size) for x in named.values())
    plan = _plan_actors(settings, max(1, batches))
    if plan[2] > 0 and not ray.cluster_resources().get("GPU"):
        emit("teacher outputs: the Ray cluster has no GPU now; the actors wait for one")
    # A few shards per actor (even progress, balanced ends), whole batches each.
    per_shard = max(1, min(_MAX_SHARD_BATCHES, batches // (plan[0] * 4)))
    shards = [
        _Shard(
            name, start, min(start + per_shard * size, len(x)), name == "train" and needs.features
        )
        for name, x in named.items()
        for start in range(0, len(x), per_shard * size)
    ]
    tensors = {name: _in_memory(x) for name, x in named.items()}
    lazy = {name: x for name, x in named.items() if tensors[name] is None and is_lazy(x)}
    report = RayJobReport(rows=sum(len(x) for x in named.values()), shards=len(shards))
    started = time.perf_counter()
    actors, infos = _start_actors(
        _source_of(teacher, teacher_ref), lazy, needs, settings, plan, teacher.fingerprint(), emit
    )
    report.startup_s = time.perf_counter() - started
    report.actors = len(actors)
    report.nodes = [str(info["node"]) for info in infos]
    report.devices = [str(info["device"]) for info in infos]
    results: dict[int, tuple[torch.Tensor | None, dict[str, torch.Tensor], int]] = {}
    try:
        with progress.phase(
            f"teacher outputs on Ray ({plural(len(actors), 'actor')})",
            total=report.rows,
            unit="rows",
            emit=emit,
        ) as bar:
            results = _run_shards(actors, shards, tensors, bar, report)
    finally:
        for actor in actors:
            ray.kill(actor)
    outputs = _assemble(teacher, shards, results, needs)
    devices = ", ".join(sorted(set(report.devices)))
    emit(
        f"teacher outputs: Ray job, {plural(report.actors, 'actor')} on "
        f"{plural(len(set(report.nodes)), 'node')} ({devices}), {plural(report.rows, 'row')} "
        f"in {report.seconds:.1f}s = {report.rows_per_s:,.0f} rows/s "
        f"(actors ready in {report.startup_s:.1f}s)"
    )
    return outputs, report


def _run_shards(
    actors: list[Any],
    shards: list[_Shard],
    tensors: dict[str, torch.Tensor | None],
    bar: progress.Bar,
    report: RayJobReport,
) -> dict[int, tuple[torch.Tensor | None, dict[str, torch.Tensor], int]]:
    """Feed the shards to the actors, ``_DEPTH`` at a time each; results by shard index."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    todo = iter(enumerate(shards))
    in_flight: dict[Any, tuple[int, Any]] = {}
    results: dict[int, tuple[torch.Tensor | None, dict[str, torch.Tensor], int]] = {}
    started = time.perf_counter()

    def submit(actor: Any) -> None:
        for index, shard in todo:
            tensor = tensors[shard.split]
            # A copy: pickling a slice (a view) would send the whole tensor's storage.
            rows = None if tensor is None else tensor[shard.start : shard.stop].clone()
            ref = actor.run.remote(shard.split, shard.start, shard.stop, rows, shard.features)
            in_flight[ref] = (index, actor)
            return

    for actor in actors:
        for _ in range(_DEPTH):
            submit(actor)
    while in_flight:
        (ref,), _ = ray.wait(list(in_flight), num_returns=1)
        index, actor = in_flight.pop(ref)
        try:
            results[index] = ray.get(ref)
        except RayTaskError as exc:
            if isinstance(exc.cause, KDForgeError):
                raise exc.cause from None
            raise PluginError(f"teacher failed on a Ray worker: {first_line(exc.cause)}") from None
        except RayActorError as exc:
            raise PluginError(f"a teacher actor died: {first_line(exc)}") from None
        shard = shards[index]
        rows = shard.stop - shard.start
        elapsed = time.perf_counter() - started
        bar.advance(rows, note=f"{(bar.done + rows) / max(elapsed, 1e-9):,.0f} rows/s")
        submit(actor)
    report.seconds = time.perf_counter() - started
    return results


def _assemble(
    teacher: Teacher,
    shards: list[_Shard],
    results: dict[int, tuple[torch.Tensor | None, dict[str, torch.Tensor], int]],
    needs: LossNeeds,
) -> TeacherOutputs:
    """The shards' outputs in row order, as :class:`TeacherOutputs`."""
    per_split: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    features: dict[str, list[torch.Tensor]] = {}
    calls = 0
    has_logits = True
    for index, shard in enumerate(shards):
        logits, tapped, shard_calls = results[index]
        calls += shard_calls
        for name, value in tapped.items():
            features.setdefault(name, []).append(value)
        if logits is None:
            if needs.logits:
                raise PluginError(
                    f"teacher {teacher.name!r} returned no logits, but the loss reads them",
                    hint="use a loss that reads features only, or a teacher with logits",
                )
            has_logits = False
            logits = torch.empty(shard.stop - shard.start, 0)
        per_split[shard.split].append(logits)

    def cat(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts) if parts else torch.empty(0)

    return TeacherOutputs(
        train=cat(per_split["train"]),
        val=cat(per_split["val"]),
        test=cat(per_split["test"]),
        forward_calls=calls,
        train_features={name: torch.cat(parts) for name, parts in features.items()},
        has_logits=has_logits,
    )
