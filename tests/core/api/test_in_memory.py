"""The in-memory teacher and dataset, and kdforge.distill's checks (no Ray, no search)."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from torch import nn

import kdforge
from kdforge.config import PluginRef, load_search_config
from kdforge.errors import ConfigError, DataError, PluginError
from kdforge.plugin_host.resolve import instantiate

datasets = pytest.importorskip("datasets")


def _rows(n: int = 60, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = torch.randn(n, 4, generator=generator) + y[:, None].float()
    return x, y


def _load(key: str, **params: object):
    ref = PluginRef(name="in_memory", params={"key": key, **params})
    return instantiate("dataset", ref, "dataset").load(0)


def _hold(data: object, transfer: object = None) -> str:
    cls = kdforge.get_registry().get("dataset", "in_memory").cls
    return str(cls.hold(data, transfer))


def test_tensors_arrays_and_lists_give_the_same_key_and_splits() -> None:
    x, y = _rows()
    key = _hold((x, y))
    assert _hold((x.numpy(), y.numpy())) == key
    assert _hold((x.tolist(), y.tolist())) == key
    assert _hold((x, (y + 1) % 3)) != key  # other labels, other data
    splits = _load(key)
    assert splits.info.input_shape == (4,) and splits.info.num_classes == 3
    assert len(splits.train.x) + len(splits.val.x) + len(splits.test.x) == len(x)
    rows = torch.cat([splits.train.x, splits.val.x, splits.test.x])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, x.tolist()))


def test_a_dataloader_a_dataset_and_a_dict_of_splits_are_read() -> None:
    x, y = _rows()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=7, shuffle=True
    )
    assert _hold(loader) == _hold((x, y))  # index order, whatever the shuffling
    table = datasets.Dataset.from_dict({"x": x.numpy(), "label": y.numpy()})
    assert _hold(table) == _hold((x, y))
    parts = datasets.DatasetDict(
        {
            "train": table.select(range(40)),
            "validation": table.select(range(40, 50)),
            "test": table.select(range(50, 60)),
        }
    )
    splits = _load(_hold(parts))
    assert (len(splits.train.x), len(splits.val.x), len(splits.test.x)) == (40, 10, 10)
    assert torch.equal(splits.val.x, x[40:50])


def test_transfer_rows_are_unlabeled_and_string_labels_are_numbered() -> None:
    x, y = _rows()
    names = np.array(["cat", "dog", "eel"])[y.numpy()]
    key = _hold((x, names), transfer=x[:5] * 2)
    splits = _load(key)
    assert splits.info.class_names == ("cat", "dog", "eel")
    assert splits.transfer is not None and len(splits.transfer.x) == 5
    assert (splits.transfer.y == -1).all()


def test_unreadable_or_device_data_is_refused_with_a_hint() -> None:
    with pytest.raises(DataError, match="inputs without labels") as info:
        _hold(torch.randn(4, 2))
    assert "transfer" in (info.value.hint or "")
    with pytest.raises(DataError, match="on meta") as info:
        _hold((torch.empty(4, 2, device="meta"), torch.zeros(4)))
    assert "cpu()" in (info.value.hint or "")
    with pytest.raises(DataError, match="unknown split 'dev'"):
        _hold({"train": _rows(), "dev": _rows()})


def test_a_module_is_keyed_by_its_weights() -> None:
    cls = kdforge.get_registry().get("teacher", "in_memory").cls
    model = nn.Sequential(nn.Linear(4, 3))
    same = copy.deepcopy(model)
    assert cls.hold(model) == cls.hold(same)
    with torch.no_grad():
        same[0].bias.add_(1.0)
    assert cls.hold(model) != cls.hold(same)

    def fn(batch: torch.Tensor) -> torch.Tensor:
        return batch[:, :3]

    assert cls.hold(fn) == cls.hold(fn)  # one object, one key
    teacher = instantiate(
        "teacher", PluginRef(name="in_memory", params={"key": cls.hold(model)}), "teacher"
    )
    teacher.load()
    x, _ = _rows(5)
    assert torch.allclose(teacher.predict(x).logits, model(x))
    with pytest.raises(ConfigError, match=r"neither a torch\.nn\.Module nor callable"):
        cls.hold(42)


def test_a_key_not_held_in_this_process_is_a_config_error() -> None:
    ref = PluginRef(name="in_memory", params={"key": "module-unknown"})
    teacher = instantiate("teacher", ref, "teacher")
    with pytest.raises(ConfigError, match="no teacher object is held") as info:
        teacher.load()
    assert "to_config" in (info.value.hint or "")


def test_distill_validates_settings_like_the_yaml(tmp_path) -> None:
    x, y = _rows()
    teacher = nn.Linear(4, 3)
    with pytest.raises(ConfigError) as from_api:
        kdforge.distill(teacher, (x, y), search={"epochs": 0}, progress=False)
    raw = {
        "name": "distill",
        "dataset": {"name": "digits"},
        "teacher": {"name": "x"},
        "student": {"name": "cnn"},
        "search": {"epochs": 0},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as from_yaml:
        load_search_config(path)
    api_line = str(from_api.value).split(": ", 1)[1]
    assert api_line in str(from_yaml.value)
    with pytest.raises(ConfigError, match=r"search\.num_trails: unknown key"):
        kdforge.distill(teacher, (x, y), search={"num_trails": 3}, progress=False)
    with pytest.raises(PluginError, match="unknown task 'detection'; available: classification"):
        kdforge.distill(teacher, (x, y), task="detection", progress=False)


def test_importing_kdforge_does_not_import_the_api_or_ray() -> None:
    code = (
        "import sys, kdforge\n"
        "print(sorted(m for m in ('kdforge.api', 'ray', 'optuna') if m in sys.modules))\n"
        "kdforge.distill\n"
        "print('kdforge.api' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]", "True"]


def test_load_student_names_a_folder_without_one(tmp_path) -> None:
    with pytest.raises(kdforge.CheckpointError, match="no student checkpoint"):
        kdforge.load_student(tmp_path)


def test_a_teacher_the_trials_could_not_receive_is_refused_with_a_hint() -> None:
    """Only an online teacher (augmented inputs) travels, through Ray's cloudpickle."""
    import threading

    from ray import cloudpickle

    from kdforge.errors import PluginError

    cls = kdforge.get_registry().get("teacher", "in_memory").cls
    scale = 2.0
    closure = instantiate(
        "teacher", PluginRef(name="in_memory", params={"key": cls.hold(lambda b: b * scale)}), "t"
    )
    closure.load()
    assert cloudpickle.loads(cloudpickle.dumps(closure)).predict(torch.ones(1, 3)).logits.sum() == 6

    class Locked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lock = threading.Lock()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    locked = instantiate(
        "teacher", PluginRef(name="in_memory", params={"key": cls.hold(Locked())}), "t"
    )
    locked.load()
    with pytest.raises(PluginError, match="cannot be sent to them") as info:
        cloudpickle.dumps(locked)
    assert "TorchScript" in (info.value.hint or "")


def test_hf_model_objects_are_called_with_a_mask_and_read_for_logits() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    cls = kdforge.get_registry().get("teacher", "in_memory").cls
    teacher = instantiate(
        "teacher", PluginRef(name="in_memory", params={"key": cls.hold(model)}), "t"
    )
    teacher.load()
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 0, 0, 0]])
    logits = teacher.predict(ids).logits
    expected = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    assert torch.allclose(logits, expected) and teacher.expected_num_classes() == 3


def test_resume_refuses_objects_the_search_did_not_use(tmp_path) -> None:
    from kdforge.config import SearchConfig

    x, y = _rows()
    cls = kdforge.get_registry().get("teacher", "in_memory").cls
    used = nn.Linear(4, 3)
    config = SearchConfig.model_validate(
        {
            "name": "r",
            "dataset": {"name": "in_memory", "params": {"key": _hold((x, y))}},
            "teacher": {"name": "in_memory", "params": {"key": cls.hold(used)}},
            "student": {"name": "mlp"},
        }
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    with pytest.raises(ConfigError, match="the teacher given is not the one the search used"):
        kdforge.resume(tmp_path, teacher=nn.Linear(4, 3), data=(x, y))
    with pytest.raises(ConfigError, match="the data given is not the one the search used"):
        kdforge.resume(tmp_path, teacher=used, data=(x, (y + 1) % 3))


def test_to_config_saves_a_hf_model_for_the_huggingface_teacher(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    from kdforge.api.replay import replay_config
    from kdforge.config import SearchConfig

    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    ids = torch.randint(1, 40, (40, 6))
    labels = torch.arange(40) % 2
    cls = kdforge.get_registry().get("teacher", "in_memory").cls
    search = SearchConfig.model_validate(
        {
            "name": "hf",
            "dataset": {"name": "in_memory", "params": {"key": _hold((ids, labels))}},
            "teacher": {"name": "in_memory", "params": {"key": cls.hold(model)}},
            "student": {"name": "transformer"},
        }
    )
    replay = yaml.safe_load(replay_config(search, tmp_path))
    assert replay["teacher"]["name"] == "huggingface"
    saved = instantiate("teacher", PluginRef(**replay["teacher"]), "teacher")
    saved.load()
    assert torch.allclose(saved.predict(ids[:4]).logits, model(input_ids=ids[:4]).logits, atol=1e-5)
    assert not list(tmp_path.rglob("*.bin"))  # safetensors, nothing to unpickle
