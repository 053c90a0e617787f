"""Language-model teachers: ``huggingface`` with ``causal_lm``/``masked_lm`` and the
``mlflow`` teacher on the ``transformers`` flavour (a real SQLite store), on tiny
GPT-2/BERT models built and trained here (no downloads)."""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from kdforge.config import PluginRef
from kdforge.errors import CheckpointError
from kdforge.plugin_host.resolve import instantiate
from kdforge.plugins.datasets.text_corpus import TextCorpus
from kdforge.plugins.teachers.huggingface import HuggingFaceTeacher
from kdforge.plugins.teachers.mlflow_model import MlflowTeacher
from kdforge.testing import TeacherContract

pytest.importorskip("transformers")

BLOCK = 24
NAME = "tiny-causal-lm"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    from kdforge.testing.lm import python_docstrings

    return python_docstrings(400, packages=("json", "csv", "string", "textwrap", "shlex"))


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    from kdforge.testing.lm import tiny_lm

    folder = tmp_path_factory.mktemp("gpt2")
    return tiny_lm(folder, "causal", texts, block=BLOCK, steps=40, vocab_size=300)


@pytest.fixture(scope="module")
def masked_dir(tmp_path_factory: pytest.TempPathFactory, texts: list[str]) -> Path:
    from kdforge.testing.lm import tiny_lm

    folder = tmp_path_factory.mktemp("bert")
    return tiny_lm(folder, "masked", texts, block=BLOCK, steps=10, vocab_size=300)


def _teacher(path: Path, task: str, **params: Any) -> HuggingFaceTeacher:
    teacher = HuggingFaceTeacher(HuggingFaceTeacher.Params(path=str(path), task=task, **params))
    teacher.load()
    return teacher


def _ids(folder: Path, texts: list[str], n: int = 3) -> torch.Tensor:
    from kdforge.testing.lm import token_blocks

    return token_blocks(texts, folder, BLOCK)[:n]


class TestCausalLMContract(TeacherContract):
    registered_name = "huggingface"
    input_shape = (BLOCK,)
    input_dtype = "int64"
    vocab_size = 50

    @pytest.fixture
    def plugin(self, causal_dir: Path) -> HuggingFaceTeacher:
        return HuggingFaceTeacher(HuggingFaceTeacher.Params(path=str(causal_dir), task="causal_lm"))

    def test_predict_gives_finite_logits(self, loaded: Any, inputs: torch.Tensor) -> None:
        # A language model's logits are per position, (n, T, V): not the 2-D rows the
        # contract's classifier check expects.
        logits = loaded.predict(inputs).logits
        assert logits is not None and logits.shape[:2] == inputs.shape
        assert logits.shape[2] == loaded.expected_num_classes()
        assert bool(torch.isfinite(logits).all())


def test_causal_lm_gives_the_models_logits_per_position(causal_dir: Path, texts: list[str]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    teacher = _teacher(causal_dir, "causal_lm")
    ids = _ids(causal_dir, texts)
    ids[1, -5:] = 0  # padding at the end of one row: masked out of attention
    out = teacher.predict(ids)
    vocab = len(AutoTokenizer.from_pretrained(str(causal_dir), local_files_only=True))
    assert out.logits is not None and tuple(out.logits.shape) == (3, BLOCK, vocab)
    assert teacher.expected_num_classes() == vocab and teacher.expected_input_dtype() == "int64"
    model = AutoModelForCausalLM.from_pretrained(str(causal_dir), local_files_only=True).eval()
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=(ids != 0).long()).logits
    torch.testing.assert_close(out.logits, reference)
    assert teacher.tokenizer_path == str(causal_dir.resolve())
    with pytest.raises(CheckpointError, match=f"reads at most {BLOCK} positions"):
        teacher.predict(torch.ones(1, BLOCK + 1, dtype=torch.long))


def test_a_causal_lm_without_pad_token_attends_to_every_position(
    causal_dir: Path, texts: list[str], tmp_path: Path
) -> None:
    """GPT-2 has no pad token: id 0 is a real token, never hidden from attention."""
    import json
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path / "no-pad"
    shutil.copytree(causal_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("pad_token_id", None)
    (folder / "config.json").write_text(json.dumps(config))
    ids = _ids(causal_dir, texts)
    ids[:, 3] = 0
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    with torch.no_grad():
        reference = model(input_ids=ids).logits
    torch.testing.assert_close(_teacher(folder, "causal_lm").predict(ids).logits, reference)


def test_masked_lm_exposes_the_last_hidden_state_per_position(
    masked_dir: Path, texts: list[str]
) -> None:
    teacher = _teacher(masked_dir, "masked_lm", hidden_states=True, hidden_layers=[-1])
    ids = _ids(masked_dir, texts)
    out = teacher.predict(ids)
    assert out.logits is not None and out.logits.shape[:2] == ids.shape
    # tiny_lm has 2 layers: hidden_0 = embeddings, hidden_2 = the last layer's output.
    hidden = {k: v for k, v in out.features.items() if k.startswith("hidden_")}
    assert list(hidden) == ["hidden_2"] and tuple(hidden["hidden_2"].shape) == (3, BLOCK, 32)
    everything = _teacher(masked_dir, "masked_lm", hidden_states=True).predict(ids).features
    assert [k for k in everything if k.startswith("hidden_")] == [
        "hidden_0",
        "hidden_1",
        "hidden_2",
    ]
    torch.testing.assert_close(everything["hidden_2"], hidden["hidden_2"])
    with pytest.raises(CheckpointError, match="hidden_layers names layer 5"):
        _teacher(masked_dir, "masked_lm", hidden_states=True, hidden_layers=[5]).predict(ids)


def test_a_folder_of_another_head_is_refused(
    causal_dir: Path, masked_dir: Path, tmp_path: Path
) -> None:
    from transformers import BertConfig, BertForSequenceClassification

    with pytest.raises(CheckpointError, match=r"holds a causal language model .* not a sequence"):
        _teacher(causal_dir, "sequence_classification")
    with pytest.raises(CheckpointError, match=r"masked language model .* not a causal") as err:
        _teacher(masked_dir, "causal_lm")
    assert "task: masked_lm" in str(err.value.hint)
    with pytest.raises(CheckpointError, match="holds a causal language model"):
        _teacher(causal_dir, "masked_lm")
    config = BertConfig(
        vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, num_labels=2
    )
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"holds a sequence classifier .* not a masked"):
        _teacher(tmp_path, "masked_lm")
    assert (
        _teacher(masked_dir, "encoder").predict(torch.ones(1, 4, dtype=torch.long)).logits is None
    )


def test_corpus_blocks_through_the_causal_teacher_give_a_finite_perplexity(
    causal_dir: Path,
) -> None:
    """text_corpus (the teacher's tokenizer) -> teacher logits on val -> task perplexity."""
    teacher = _teacher(causal_dir, "causal_lm")
    dataset = TextCorpus(
        TextCorpus.Params(
            source="python_stdlib",
            stdlib_packages=["json", "csv", "string", "textwrap", "shlex"],
            tokenizer=teacher.tokenizer_path,
            block_size=BLOCK,
        )
    )
    splits = dataset.load(seed=0)
    task = instantiate("task", PluginRef(name="language_modeling"), "task")
    task.check(splits)
    assert splits.info.num_classes == teacher.expected_num_classes()
    logits = teacher.predict(splits.val.x).logits
    assert logits is not None
    metrics = task.metrics(logits, splits.val.y)
    # Trained a few steps on this corpus: finite and well below a uniform guess over V.
    assert math.isfinite(metrics["perplexity"]) and metrics["perplexity"] < splits.info.num_classes
    assert 0.0 <= metrics["token_acc"] <= 1.0


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory, causal_dir: Path) -> dict[str, Any]:
    """The tiny causal LM logged with mlflow.transformers.log_model in a SQLite store."""
    import mlflow
    from mlflow.tracking import MlflowClient
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment(
            "lm-teacher", artifact_location=(folder / "artifacts").as_uri()
        )
        model = AutoModelForCausalLM.from_pretrained(str(causal_dir), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(causal_dir), local_files_only=True)
        with mlflow.start_run(experiment_id=experiment) as run:
            info = mlflow.transformers.log_model(
                {"model": model, "tokenizer": tokenizer},
                name="lm",
                task="text-generation",
                # Explicit: MLflow's inferred requirements import torchvision.
                pip_requirements=["torch", "transformers"],
                registered_model_name=NAME,
            )
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.set_registered_model_alias(NAME, "teacher", info.registered_model_version)
    finally:
        mlflow.set_tracking_uri(before)
    return {"tracking_uri": uri, "run_id": run.info.run_id}


def _mlflow(logged: dict[str, Any], uri: str) -> MlflowTeacher:
    teacher = MlflowTeacher(MlflowTeacher.Params(uri=uri, tracking_uri=logged["tracking_uri"]))
    teacher.load()
    return teacher


def test_mlflow_transformers_flavour_loads_as_a_causal_lm_without_pickle(
    logged: dict[str, Any], causal_dir: Path, texts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a pickle was read while loading the transformers flavour")

    # Safetensors and JSON only: any unpickling on the way fails the test.
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    teacher = _mlflow(logged, f"models:/{NAME}@teacher")
    monkeypatch.undo()
    assert teacher.flavor == "transformers" and teacher.expected_input_dtype() == "int64"
    folder = Path(str(teacher.tokenizer_path))
    assert (folder / "tokenizer.json").is_file() and not list(folder.glob("*.bin"))
    ids = _ids(causal_dir, texts)
    reference = _teacher(causal_dir, "causal_lm")
    out = teacher.predict(ids)
    assert out.logits is not None
    torch.testing.assert_close(out.logits, reference.predict(ids).logits, rtol=0, atol=0)
    assert teacher.expected_num_classes() == reference.expected_num_classes()
    assert teacher.num_parameters() == reference.num_parameters()
    # The same model reached by its run gives the same files, hence the same cache key.
    again = _mlflow(logged, f"runs:/{logged['run_id']}/lm")
    assert again.fingerprint() == teacher.fingerprint()
    torch.testing.assert_close(again.predict(ids).logits, out.logits, rtol=0, atol=0)


def test_mlflow_transformers_flavour_respects_an_explicit_task(logged: dict[str, Any]) -> None:
    teacher = MlflowTeacher(
        MlflowTeacher.Params(
            uri=f"models:/{NAME}@teacher",
            tracking_uri=logged["tracking_uri"],
            task="masked_lm",
        )
    )
    with pytest.raises(CheckpointError, match="holds a causal language model"):
        teacher.load()


def test_masked_teacher_reads_the_same_masked_blocks_in_every_load(masked_dir: Path) -> None:
    """The masking is stored in the inputs: two loads give the teacher identical rows."""
    teacher = _teacher(masked_dir, "masked_lm")
    params = TextCorpus.Params(
        source="python_stdlib",
        stdlib_packages=["json", "csv"],
        tokenizer=teacher.tokenizer_path,
        block_size=BLOCK,
        mode="masked",
    )
    first, again = TextCorpus(params).load(seed=1), TextCorpus(params).load(seed=1)
    assert torch.equal(first.for_teacher().val.x, again.for_teacher().val.x)
    logits = teacher.predict(first.val.x).logits
    torch.testing.assert_close(teacher.predict(again.val.x).logits, logits, rtol=0, atol=0)
    task = instantiate("task", PluginRef(name="language_modeling", params={"mode": "masked"}), "t")
    task.check(first)
    assert math.isfinite(task.metrics(logits, first.val.y)["perplexity"])


@pytest.mark.parametrize(
    ("layout", "match"),
    [
        ("hub_reference", "stores no model files"),
        ("pickled_weights", "has no safetensors weights"),
        ("peft", "holds a PEFT adapter"),
    ],
)
def test_transformers_flavours_that_would_download_or_unpickle_are_refused(
    tmp_path: Path, causal_dir: Path, layout: str, match: str
) -> None:
    """MLflow cannot log these offline (a hub reference needs the hub), so the
    downloaded layout is built here and handed to the flavour loader directly."""
    import shutil

    from mlflow.models import Model

    conf: dict[str, Any] = {"model_binary": "model", "task": "text-generation"}
    if layout != "hub_reference":
        shutil.copytree(causal_dir, tmp_path / "model")
    if layout == "pickled_weights":
        (tmp_path / "model" / "model.safetensors").rename(tmp_path / "model" / "pytorch_model.bin")
    if layout == "peft":
        conf["peft_adaptor"] = "peft"
    meta = Model()
    meta.add_flavor("transformers", **conf)
    teacher = MlflowTeacher(MlflowTeacher.Params(uri="models:/x@y", tracking_uri="sqlite://"))
    teacher._sha = "0" * 64
    with pytest.raises(CheckpointError, match=match):
        teacher._load_transformers(tmp_path, meta)
