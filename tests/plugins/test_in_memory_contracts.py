"""The built-in ``in_memory`` teacher and dataset pass their kinds' contracts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdforge.plugins.datasets.in_memory import InMemory
from kdforge.plugins.teachers.in_memory import InMemoryTeacher
from kdforge.testing import DatasetContract, TeacherContract


def _rows() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(90) % 3
    return torch.randn(90, 4, generator=generator) + y[:, None].float(), y


class TestInMemoryDataset(DatasetContract):
    registered_name = "in_memory"

    @pytest.fixture
    def plugin(self) -> InMemory:
        x, y = _rows()
        key = InMemory.hold((x, y), transfer=x[:6] * 0.5)
        return InMemory(InMemory.Params(key=key))


class TestInMemoryTeacher(TeacherContract):
    registered_name = "in_memory"
    input_shape = (4,)

    @pytest.fixture
    def plugin(self) -> InMemoryTeacher:
        torch.manual_seed(0)
        key = InMemoryTeacher.hold(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
        return InMemoryTeacher(InMemoryTeacher.Params(key=key))
