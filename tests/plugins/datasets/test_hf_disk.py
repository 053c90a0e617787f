"""Dataset ``hf_disk``: saved DatasetDict/Dataset with array, image and text columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdforge.errors import DataError
from kdforge.plugins.datasets.hf_disk import HFArrayInputs, HFDisk, HFImageInputs
from kdforge.testing import DatasetContract
from tests.plugins.datasets.builders import _pattern, blobs, text_rows, write_hf_dataset

datasets = pytest.importorskip("datasets")


def _load(path: Path, seed: int = 0, **params):
    return HFDisk(HFDisk.Params(path=str(path), **params)).load(seed)


class TestHFDiskContract(DatasetContract):
    registered_name = "hf_disk"

    @pytest.fixture
    def plugin(self, tmp_path: Path) -> HFDisk:
        return HFDisk(HFDisk.Params(path=str(write_hf_dataset(tmp_path / "hf")), storage="stream"))


def test_dataset_dict_splits_are_used_as_they_are(tmp_path: Path) -> None:
    x, _ = blobs(120)
    splits = _load(write_hf_dataset(tmp_path / "hf"))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 20)
    assert splits.info.class_names == ("a", "b", "c") and splits.info.input_shape == (6,)
    torch.testing.assert_close(splits.val.x, torch.from_numpy(x[80:100]))
    stream = _load(tmp_path / "hf", storage="stream", num_workers=0)
    assert isinstance(stream.val.x, HFArrayInputs)
    torch.testing.assert_close(stream.val.x[:], splits.val.x)


def test_single_dataset_is_split_and_unknown_names_are_mapped(tmp_path: Path) -> None:
    x, y = blobs(90)
    data = datasets.Dataset.from_dict({"vec": x.tolist(), "label": y.tolist()})
    data.save_to_disk(str(tmp_path / "one"))
    splits = _load(tmp_path / "one")
    assert sum(len(s) for s in (splits.train, splits.val, splits.test)) == 90
    renamed = datasets.DatasetDict(
        {"fit": data.select(range(70)), "holdout": data.select(range(70, 90))}
    )
    renamed.save_to_disk(str(tmp_path / "renamed"))
    with pytest.raises(DataError, match="unknown split name 'fit'"):
        _load(tmp_path / "renamed")
    mapped = _load(tmp_path / "renamed", split_names={"fit": "train", "holdout": "test"})
    assert len(mapped.test) == 20 and len(mapped.train) + len(mapped.val) == 70


def test_image_column_is_decoded_like_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    images = [Image.fromarray(_pattern(i % 3, 10, 10, rng)) for i in range(45)]
    data = datasets.Dataset.from_dict({"img": images, "label": [i % 3 for i in range(45)]})
    data = data.cast_column("img", datasets.Image())
    data.save_to_disk(str(tmp_path / "img"))
    params = {"image": {"image_size": 8, "augment": {"enabled": True}}}
    memory = _load(tmp_path / "img", **params)
    assert memory.info.input_shape == (3, 8, 8)
    stream = _load(tmp_path / "img", storage="stream", num_workers=0, **params)
    assert isinstance(stream.test.x, HFImageInputs) and stream.train.x.augments
    torch.testing.assert_close(stream.test.x[:], memory.test.x)


def test_text_column_needs_an_encoding(tmp_path: Path) -> None:
    rows = text_rows(60)
    data = datasets.Dataset.from_dict(
        {"sentence": [r["text"] for r in rows], "label": [r["label"] for r in rows]}
    )
    data.save_to_disk(str(tmp_path / "txt"))
    with pytest.raises(DataError, match="holds text") as info:
        _load(tmp_path / "txt")
    assert "bag_of_words" in (info.value.hint or "")
    splits = _load(tmp_path / "txt", text={"representation": "bag_of_words"})
    assert splits.info.class_names == ("neg", "neutral", "pos")
    assert splits.train.x.dtype == torch.float32 and splits.info.input_shape[0] > 10


def test_missing_folder_and_ambiguous_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="save_to_disk"):
        _load(tmp_path / "missing")
    x, y = blobs(30)
    data = datasets.Dataset.from_dict({"a": x.tolist(), "b": x.tolist(), "label": y.tolist()})
    data.save_to_disk(str(tmp_path / "two"))
    with pytest.raises(DataError, match="input_column"):
        _load(tmp_path / "two")
    assert _load(tmp_path / "two", input_column="b").info.input_shape == (6,)


def _tasks_dataset(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 4)).astype(np.float32)
    price = (3 * x[:, 0] - 2 * x[:, 1]).tolist()
    price[5] = None  # unknown
    data = datasets.Dataset.from_dict(
        {
            "features": x.tolist(),
            "price": price,
            "rent": (x[:, 2] ** 2).tolist(),
            "hot": (x[:, 0] > 0).tolist(),
            "leak": (x[:, 3] > 0.5).astype(int).tolist(),
        }
    )
    data.save_to_disk(str(path))
    return path


def test_regression_and_multilabel_columns(tmp_path: Path) -> None:
    from kdforge.config import PluginRef
    from kdforge.plugin_host.resolve import instantiate

    path = _tasks_dataset(tmp_path / "hf")
    regression = _load(path, input_column="features", targets=["price", "rent"])
    assert regression.info.task == "regression" and regression.info.num_classes == 2
    assert regression.info.class_names == ("price", "rent")
    assert regression.train.y.dtype == torch.float32 and regression.train.y.shape[1] == 2
    everything = torch.cat([regression.train.y, regression.val.y, regression.test.y])
    assert int(torch.isnan(everything).sum()) == 1  # the one unknown price
    multilabel = _load(path, input_column="features", labels=["hot", "leak"])
    assert multilabel.info.task == "multilabel"
    assert set(torch.cat([multilabel.train.y, multilabel.val.y]).unique().tolist()) == {0.0, 1.0}
    for splits in (regression, multilabel):
        instantiate("task", PluginRef(name=splits.info.task), "task").check(splits)
    with pytest.raises(ValueError, match="not both"):
        _load(path, targets=["price"], labels=["hot"])
    with pytest.raises(DataError, match="lacks the columns"):
        _load(path, input_column="features", targets=["price", "nope"])


def test_token_tagging_from_list_columns(tmp_path: Path) -> None:
    from tests.plugins.datasets.tagging import save_tokenizer, sentences

    rows = sentences(40, seed=0)
    names = ["CAP", "NUM", "O"]
    feature = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    data = datasets.Dataset.from_dict(
        {
            "tokens": [r["tokens"] for r in rows],
            "ner": [[names.index(t) for t in r["tags"]] for r in rows],
        },
        features=feature,
    )
    data.save_to_disk(str(tmp_path / "hf"))
    tokenizer = save_tokenizer(tmp_path / "tok")
    splits = _load(
        tmp_path / "hf",
        input_column="tokens",
        tags_column="ner",
        text={"tokenizer": str(tokenizer), "max_length": 16},
    )
    assert splits.info.task == "token_classification"
    assert splits.info.class_names == tuple(names)  # the ClassLabel's names
    y = torch.cat([splits.train.y, splits.val.y, splits.test.y])
    assert y.shape[1] == 16 and int(y.max()) == 2 and int(y.min()) == -2
    tagged = int((y >= 0).sum())
    assert tagged == sum(len(r["tags"]) for r in rows)  # one tag per word, first sub-token
    with pytest.raises(DataError, match=r"needs text\.tokenizer"):
        _load(tmp_path / "hf", input_column="tokens", tags_column="ner")
