"""Teacher and student reading different views of the same rows (``Split.teacher_x``).

A tiny local BERT (built as in the ``huggingface`` teacher tests) reads token ids while
the student reads bag-of-words vectors of the same texts: the datasets give both views,
the teacher's outputs and cache key follow the teacher's view, and a teacher fed a view
it cannot read fails before Ray in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from kdforge.config import DatasetRef
from kdforge.config.teacher_cache_settings import TeacherCacheSettings
from kdforge.errors import DataError
from kdforge.plugins.datasets.hf_disk import HFDisk
from kdforge.plugins.datasets.text import TextDataset
from kdforge.plugins.teachers.huggingface import HuggingFaceTeacher
from kdforge.search.checks import check_data_against_teacher
from kdforge.teacher.cache import prepare_teacher_outputs
from kdforge.teacher.outputs import compute_teacher_outputs, training_inputs
from kdforge.testing import DatasetContract
from tests.plugins.teachers.test_huggingface import MAX_LENGTH, _build_teacher, _texts

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build_teacher(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("texts") / "texts.jsonl"
    rows = [{"text": t, "label": y} for t, y in _texts(200, seed=3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _params(corpus: Path, hf_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        "path": str(corpus),
        "tokenizer": str(hf_dir),
        "max_length": MAX_LENGTH,
        "representation": "bag_of_words",
        "teacher_representation": "tokens",
        **extra,
    }


def _text(corpus: Path, hf_dir: Path, **extra: Any) -> TextDataset:
    return TextDataset(TextDataset.Params(**_params(corpus, hf_dir, **extra)))


def _teacher(hf_dir: Path) -> HuggingFaceTeacher:
    teacher = HuggingFaceTeacher(HuggingFaceTeacher.Params(path=str(hf_dir)))
    teacher.load()
    return teacher


class TestTextTeacherViewContract(DatasetContract):
    registered_name = "text"

    @pytest.fixture
    def plugin(self, corpus: Path, hf_dir: Path) -> TextDataset:
        return _text(corpus, hf_dir, max_features=30, transfer_fraction=0.2)


def test_text_gives_the_student_bag_of_words_and_the_teacher_token_ids(
    corpus: Path, hf_dir: Path
) -> None:
    splits = _text(corpus, hf_dir).load(0)
    tokens = _text(corpus, hf_dir, representation="tokens", teacher_representation=None).load(0)
    info = splits.info
    assert info.input_dtype == "float32" and info.input_shape == (18,)  # the words used
    assert info.vocab_size is None and info.tokenizer is None  # the student's view
    assert info.teacher_input_shape == (MAX_LENGTH,) and info.teacher_input_dtype == "int64"
    assert info.teacher_vocab_size == tokens.info.vocab_size
    assert info.for_teacher().vocab_size == tokens.info.vocab_size
    for name, split in splits.named_splits().items():
        assert split.x.dtype == torch.float32 and split.teacher_x is not None
        # The teacher's view of a row is the token ids a tokens dataset gives it.
        torch.testing.assert_close(split.teacher_x, tokens.named_splits()[name].x)
    # The teacher's view is what a tokens-only dataset is: same fingerprint.
    assert splits.for_teacher().fingerprint() == tokens.fingerprint()
    assert splits.fingerprint() != tokens.fingerprint()  # both views are covered
    other = _text(corpus, hf_dir, max_features=8).load(0)
    assert other.fingerprint() != splits.fingerprint()
    assert other.for_teacher().fingerprint() == splits.for_teacher().fingerprint()


def test_same_representation_gives_no_teacher_view(corpus: Path, hf_dir: Path) -> None:
    splits = _text(corpus, hf_dir, teacher_representation="bag_of_words").load(0)
    assert not splits.has_teacher_view and splits.for_teacher() is splits


def test_training_inputs_append_the_transfer_rows_of_both_views(corpus: Path, hf_dir: Path) -> None:
    splits = _text(corpus, hf_dir, transfer_fraction=0.25).load(0)
    assert splits.transfer is not None and splits.transfer.teacher_x is not None
    train = training_inputs(splits)
    assert train.teacher_x is not None
    assert len(train.teacher_x) == len(train.x) == len(splits.train) + len(splits.transfer)
    torch.testing.assert_close(train.teacher_x[len(splits.train) :], splits.transfer.teacher_x)
    assert train.teacher_x.dtype == torch.int64 and train.x.dtype == torch.float32


def test_teacher_outputs_come_from_the_teacher_view(corpus: Path, hf_dir: Path) -> None:
    teacher = _teacher(hf_dir)
    splits = _text(corpus, hf_dir, transfer_fraction=0.25).load(0)
    check_data_against_teacher(splits, teacher, "huggingface")  # reads its own view
    outputs = compute_teacher_outputs(teacher, splits, batch_size=64)
    tokens = _text(
        corpus, hf_dir, representation="tokens", teacher_representation=None, transfer_fraction=0.25
    ).load(0)
    expected = compute_teacher_outputs(teacher, tokens, batch_size=64)
    torch.testing.assert_close(outputs.train, expected.train)
    torch.testing.assert_close(outputs.test, expected.test)
    assert outputs.accuracy(splits)["test"] > 0.9


def test_changing_only_the_student_view_is_a_cache_hit(
    corpus: Path, hf_dir: Path, tmp_path: Path
) -> None:
    teacher = _teacher(hf_dir)
    settings = TeacherCacheSettings()
    lines: list[str] = []
    first = prepare_teacher_outputs(
        teacher, _text(corpus, hf_dir).load(0), settings, cache_dir=tmp_path, emit=lines.append
    )
    assert first.forward_calls > 0
    again = prepare_teacher_outputs(
        teacher,
        _text(corpus, hf_dir, max_features=8).load(0),
        settings,
        cache_dir=tmp_path,
        emit=lines.append,
    )
    assert again.forward_calls == 0 and any("cache hit" in line for line in lines)
    torch.testing.assert_close(again.test, first.test)


def test_a_token_teacher_fed_bag_of_words_fails_in_one_line(corpus: Path, hf_dir: Path) -> None:
    """The old case: one representation for both sides, a Hugging Face teacher."""
    params = _params(corpus, hf_dir, teacher_representation=None)
    splits = TextDataset(TextDataset.Params(**params)).load(0)
    with pytest.raises(DataError) as info:
        check_data_against_teacher(
            splits, _teacher(hf_dir), "huggingface", dataset=DatasetRef(name="text", params=params)
        )
    message = str(info.value.args[0])
    assert "\n" not in message and "teacher 'huggingface' reads token ids" in message
    assert "representation: bag_of_words" in message and "float32" in message
    assert "teacher_representation: tokens" in (info.value.hint or "")


def test_hf_disk_text_section_gives_the_teacher_its_view(tmp_path: Path, hf_dir: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = _texts(120, seed=5)
    data = datasets.Dataset.from_dict(
        {"sentence": [t for t, _ in rows], "label": [y for _, y in rows]}
    )
    data.save_to_disk(str(tmp_path / "txt"))
    text = {"representation": "bag_of_words", "teacher_representation": "tokens"}
    plugin = HFDisk(
        HFDisk.Params(
            path=str(tmp_path / "txt"),
            text={**text, "tokenizer": str(hf_dir), "max_length": MAX_LENGTH},
        )
    )
    splits = plugin.load(0)
    assert splits.train.x.dtype == torch.float32 and splits.test.teacher_x is not None
    assert splits.test.teacher_x.shape == (len(splits.test), MAX_LENGTH)
    assert splits.info.teacher_input_dtype == "int64"
    check_data_against_teacher(splits, _teacher(hf_dir), "huggingface")


def test_text_params_need_a_tokenizer_for_a_token_teacher(corpus: Path) -> None:
    with pytest.raises(ValueError, match="teacher_representation 'tokens' needs `tokenizer`"):
        TextDataset.Params(
            path=str(corpus), representation="bag_of_words", teacher_representation="tokens"
        )


@pytest.mark.slow
def test_ray_job_runs_the_teacher_on_its_view(ray_session, corpus: Path, hf_dir: Path) -> None:
    from kdforge.config import PluginRef
    from kdforge.config.teacher_inference_settings import TeacherInferenceSettings
    from kdforge.teacher.inference import TeacherInference

    teacher = _teacher(hf_dir)
    splits = _text(corpus, hf_dir, transfer_fraction=0.25).load(0)
    settings = TeacherInferenceSettings.model_validate(
        {"where": "ray", "batch_size": 64, "actors": 1}
    )
    ref = PluginRef(name="huggingface", params={"path": str(hf_dir)})
    on_ray = TeacherInference(settings, teacher_ref=ref)(teacher, splits, emit=lambda _: None)
    local = compute_teacher_outputs(teacher, splits, batch_size=64)
    for split in ("train", "val", "test"):
        torch.testing.assert_close(getattr(on_ray, split), getattr(local, split))


@pytest.mark.slow
def test_a_bert_teacher_distils_into_a_bag_of_words_mlp(
    ray_session, corpus: Path, hf_dir: Path, tmp_path: Path
) -> None:
    """The whole workflow: BERT reads token ids, the MLP student bag-of-words vectors;
    the search's cached teacher outputs serve a student of another view."""
    from kdforge.config import SearchConfig
    from kdforge.search.driver import run_search

    def config(name: str, trials: int, export: bool) -> SearchConfig:
        return SearchConfig.model_validate(
            {
                "name": name,
                "output_dir": str(tmp_path / "runs"),
                "dataset": {"name": "text", "params": _params(corpus, hf_dir)},
                "teacher": {"name": "huggingface", "params": {"path": str(hf_dir)}},
                "student": {
                    "name": "mlp",
                    "params": {"max_depth": 1, "min_width": 16, "max_width": 32},
                },
                "search": {
                    "num_trials": trials,
                    "epochs": 2,
                    "grace_period": 2,
                    "batch_size": 16,
                    "lr": {"low": 0.01, "high": 0.03, "log": True},
                },
                "baseline": {"enabled": False},
                "export": {"enabled": export},
                "tracking": {"uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
            }
        )

    lines: list[str] = []
    result = run_search(config("bow-from-bert", 2, True), emit=lines.append)
    summary = result.summary
    assert result.best is not None and len(result.rows) == 2
    assert summary["teacher_test_acc"] > 0.9 and summary["teacher_forward_calls"] > 0
    assert summary["student_params"] * 5 < summary["teacher_params"]
    assert summary["export_max_abs_diff"] < 1e-4  # ONNX parity on bag-of-words rows

    import onnxruntime as ort

    session = ort.InferenceSession(summary["export_path"], providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.type == "tensor(float)" and given.shape[-1] == 18  # the bag-of-words width
    # The search's cache entry serves a student of another view (no teacher call).
    from kdforge.teacher.cache import default_cache_dir

    again: list[str] = []
    other = _text(corpus, hf_dir, max_features=8).load(0)
    outputs = prepare_teacher_outputs(
        _teacher(hf_dir),
        other,
        TeacherCacheSettings(),
        cache_dir=default_cache_dir(tmp_path / "runs"),
        emit=again.append,
    )
    assert outputs.forward_calls == 0 and any("cache hit" in line for line in again), again


def test_the_text_bow_from_bert_example_loads_both_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from kdforge.config import load_search_config
    from kdforge.plugin_host.resolve import instantiate

    root = Path(__file__).resolve().parents[3]
    folder = root / "examples" / "text-bow-from-bert"
    spec = importlib.util.spec_from_file_location("make_data", folder / "make_data.py")
    assert spec is not None and spec.loader is not None
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    search = load_search_config(folder / "search.yaml")
    params = dict(search.dataset.params)
    assert params["tokenizer"] == search.teacher.params["path"] == "kdforge-runs/tiny-bert"
    assert (root / params["path"]).stat().st_size < 60_000  # kept small
    # The documented command's teacher, built small here (one epoch on a few rows).
    monkeypatch.chdir(tmp_path)
    make_data.train_teacher(tmp_path / "kdforge-runs" / "tiny-bert", make_data.texts(64, 0), 1)
    params["path"] = str(root / params["path"])
    dataset = instantiate("dataset", DatasetRef(name="text", params=params), "dataset")
    instantiate("search_space", search.student, "student")
    splits = dataset.load(search.seed)
    assert splits.info.input_dtype == "float32" and splits.info.teacher_input_dtype == "int64"
    assert splits.transfer is not None
    teacher = instantiate("teacher", search.teacher, "teacher")
    teacher.load()
    check_data_against_teacher(splits, teacher, "huggingface")
