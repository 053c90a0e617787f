"""A language-model student written as a Hugging Face model folder.

A language-model student (:class:`kdforge.search_spaces.hf_lm_model.HuggingFaceLMStudent`)
wraps a ``transformers`` ``*ForCausalLM`` / ``*ForMaskedLM`` model. What serving
stacks load is that model as a folder: ``config.json``, ``model.safetensors``,
``generation_config.json`` and the tokenizer's files, which
``AutoModelForCausalLM.from_pretrained(folder)`` (or ``...ForMaskedLM``) and
``AutoTokenizer.from_pretrained(folder)`` read back without running pickled code.

The export step only sees an ``nn.Module`` (this package sits below the search spaces),
so it recognises an LM student by its attributes (:func:`is_hf_lm_student`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdforge.errors import ExportError

__all__ = ["HF_FOLDER", "LM_MODES", "hf_lm_mode", "is_hf_lm_student", "save_hf_folder"]

#: The folder, inside the search folder, that holds the student as a Hugging Face model.
HF_FOLDER = "student_hf"

#: Language-modelling modes of an LM student, and the pipeline task each one serves.
LM_MODES = {"causal": "text-generation", "masked": "fill-mask"}


def is_hf_lm_student(module: Any) -> bool:
    """Whether ``module`` is a language-model student wrapping a ``transformers`` model.

    True for :class:`~kdforge.search_spaces.hf_lm_model.HuggingFaceLMStudent` and any
    module with the same face: ``.mode`` in ``causal``/``masked`` and a ``.model`` that
    has ``save_pretrained``.
    """
    return getattr(module, "mode", None) in LM_MODES and callable(
        getattr(getattr(module, "model", None), "save_pretrained", None)
    )


def hf_lm_mode(module: Any) -> str:
    """The student's mode (``causal`` or ``masked``); raises for a non-LM module."""
    if not is_hf_lm_student(module):
        raise ExportError(
            f"{type(module).__name__} is not a language-model student",
            hint="only students of the language-model spaces (HuggingFaceLMStudent) are "
            "saved as Hugging Face model folders",
        )
    return str(module.mode)


def save_hf_folder(student: Any, folder: str | Path) -> Path:
    """Write ``student`` as a Hugging Face model folder (config, safetensors, tokenizer).

    The student's own ``save_hf_folder`` is used when it has one (it also handles a
    trimmed vocabulary, whose tokenizer must be rewritten to the kept tokens). Without
    it, an untrimmed student is saved here: ``model.save_pretrained`` (safetensors) and
    the tokenizer loaded from ``tokenizer_dir`` and saved beside it (its files only,
    never the weights of a teacher folder it may share).

    Args:
        student: A language-model student (:func:`is_hf_lm_student`).
        folder: Where to write (created; existing files are overwritten).

    Returns:
        The folder.

    Raises:
        ExportError: not an LM student, a trimmed vocabulary without the student's own
            writer, no tokenizer folder, or the folder lacks the files a loader needs.
    """
    mode = hf_lm_mode(student)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    own = getattr(student, "save_hf_folder", None)
    written = Path(own(folder)) if callable(own) else _save_untrimmed(student, folder)
    _check_folder(written, mode)
    return written


def _save_untrimmed(student: Any, folder: Path) -> Path:
    if getattr(student, "kept_token_ids", None) is not None:
        raise ExportError(
            "the student has a trimmed vocabulary, and this kdforge cannot write its "
            "tokenizer for the kept tokens",
            hint="update kdforge (HuggingFaceLMStudent.save_hf_folder writes trimmed "
            "students), or search without vocabulary trimming",
        )
    tokenizer_dir = getattr(student, "tokenizer_dir", None)
    if not tokenizer_dir:
        raise ExportError(
            "the language-model student names no tokenizer folder (tokenizer_dir)",
            hint="build the student with tokenizer_dir=<the teacher's tokenizer folder>",
        )
    # transformers belongs to the optional [hf] extra and only LM students reach here.
    from transformers import AutoTokenizer

    student.model.save_pretrained(str(folder))  # safetensors: no pickle to load it back
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    tokenizer.save_pretrained(str(folder))
    return folder


def _check_folder(folder: Path, mode: str) -> None:
    missing = [n for n in ("config.json", "tokenizer_config.json") if not (folder / n).is_file()]
    if not any(folder.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise ExportError(
            f"the {mode} language-model student's folder {folder} lacks {', '.join(missing)}",
            hint="the student's save_hf_folder must write the model with save_pretrained "
            "(safetensors) and its tokenizer",
        )
