"""Data-parallel training: shards cover the rows once, and 2 workers train like 1 process."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from kdforge.plugins.losses.hinton_kd import HintonKD
from kdforge.training.distributed import DataParallel, shard_order
from kdforge.training.trainer import TrainSettings, train_model

# 193 rows in batches of 64: the last global batch has one row, so one of two workers
# gets a stand-in row that weighs nothing (every worker must take the same steps).
ROWS, BATCH = 193, 64


@pytest.mark.parametrize(("rows", "batch", "workers"), [(193, 64, 2), (200, 12, 3), (5, 8, 4)])
def test_shards_cover_every_row_exactly_once(rows: int, batch: int, workers: int) -> None:
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(1))
    taken: list[int] = []
    steps = None
    for rank in range(workers):
        local, shares = shard_order(order, batch, rank, workers)
        steps = steps or len(shares)
        assert len(shares) == steps == -(-rows // batch)  # the one-process step count
        real = 0
        for number, (global_rows, mine) in enumerate(shares):
            assert global_rows == len(order[number * batch : (number + 1) * batch])
            start = sum(max(m, 1) for _, m in shares[:number])
            block = local[start : start + max(mine, 1)]
            if mine:
                taken.extend(block.tolist())
            real += mine
        assert len(local) == sum(max(m, 1) for _, m in shares)
    assert sorted(taken) == list(range(rows))


def test_batch_must_divide_by_workers() -> None:
    with pytest.raises(ValueError, match="divide by 3 workers"):
        shard_order(torch.arange(10), 8, 0, 3)


def _data():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (ROWS,), generator=g)
    centers = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    x = centers[y] + torch.randn(ROWS, 2, generator=g)
    teacher = torch.randn(ROWS, 3, generator=g) + 3 * torch.nn.functional.one_hot(y, 3)
    return x, y, teacher


def _train(parallel: DataParallel | None) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    # Nested blocks: FSDP shards the inner ones first, then what is left.
    model = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU()), torch.nn.Linear(16, 3)
    )
    x, y, teacher = _data()
    result = train_model(
        model,
        x=x,
        y=y,
        val_x=x[:50],
        val_y=y[:50],
        settings=TrainSettings(epochs=2, lr=0.01, batch_size=BATCH, seed=3),
        loss=HintonKD(HintonKD.Params(), {"temperature": 2.0, "alpha": 0.5}),
        teacher_logits=teacher,
        parallel=parallel,
    )
    if parallel is not None:
        assert sum(result.history[-1].worker_rows) == ROWS
    from kdforge.training.distributed import model_state

    return model_state(model, parallel)


def _worker(rank: int, port: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for mode in ("ddp", "fsdp"):
            state = _train(DataParallel(rank, 2, mode))  # type: ignore[arg-type]
            if rank == 0:
                torch.save(state, Path(folder) / f"{mode}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_workers_train_the_weights_one_process_does(tmp_path: Path) -> None:
    """Same steps, same global batches, gradients of the whole batch: same weights."""
    alone = _train(None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=2)
    for mode in ("ddp", "fsdp"):
        together = torch.load(tmp_path / f"{mode}.pt", weights_only=True)
        assert together.keys() == alone.keys()
        for name, value in alone.items():
            torch.testing.assert_close(
                together[name], value, atol=2e-5, rtol=1e-4, msg=f"{mode} {name}"
            )
