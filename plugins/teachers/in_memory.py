"""Teacher ``in_memory``: a model object held by this Python process (``kdforge.distill``).

The Python API (:func:`kdforge.distill`) hands the teacher object to :meth:`hold`,
which keeps it in this process under a key and returns the key; the config then reads
``teacher: {name: in_memory, params: {key: ...}}`` and validates like any other.

The teacher runs in the driver only: the search computes its outputs once there
(cached on disk by content, see :mod:`kdforge.teacher.cache`) and ships the outputs,
not the teacher, to the trials through Ray's object store. The key of an
``nn.Module`` (a Hugging Face model is one) is a digest of its class and weights, so
the same weights give the same key in any process and a second search hits the teacher
cache. A plain callable has no weights to digest: its key is random per object, so the
cache is hit only by passing the same object again in the same process.
"""

from __future__ import annotations

import hashlib
import uuid
import weakref
from typing import Any, ClassVar

import torch
from pydantic import Field

import kdforge
from kdforge.errors import ConfigError, PluginError
from kdforge.interfaces import ModelOutput, PluginParams, Teacher

__all__ = ["InMemoryTeacher", "InMemoryTeacherParams", "module_digest"]

_WHERE = "teacher 'in_memory'"


class InMemoryTeacherParams(PluginParams):
    """Parameters of the ``in_memory`` teacher."""

    key: str = Field(description="The key kdforge.distill gave the teacher object it holds.")


def module_digest(model: torch.nn.Module) -> str:
    """A digest of a module's class, parameter/buffer names, shapes, dtypes and values."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


# Random keys of plain callables, per object, so the same object keeps its key.
_CALLABLE_KEYS: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


class InMemoryTeacher(Teacher):
    """A teacher object held in this process (an ``nn.Module`` or a callable)."""

    name = "in_memory"
    Params = InMemoryTeacherParams

    #: Key -> object, in the driver process only (the trials never need the teacher).
    held: ClassVar[dict[str, Any]] = {}

    @classmethod
    def hold(cls, teacher: Any) -> str:
        """Keep ``teacher`` in this process; return its key (a content digest for modules).

        Raises:
            ConfigError: ``teacher`` is neither an ``nn.Module`` nor callable.
        """
        if isinstance(teacher, torch.nn.Module):
            key = f"module-{module_digest(teacher)}"
        elif callable(teacher):
            try:
                key = _CALLABLE_KEYS.setdefault(teacher, f"callable-{uuid.uuid4().hex[:24]}")
            except TypeError:  # not weak-referenceable: a new key each time
                key = f"callable-{uuid.uuid4().hex[:24]}"
        else:
            raise ConfigError(
                f"teacher: a {type(teacher).__name__} is neither a torch.nn.Module nor callable",
                hint="pass a model object, a function returning logits, or a teacher config "
                "dict such as {'name': 'checkpoint', 'params': {'path': 'teacher.pt'}}",
            )
        cls.held[key] = teacher
        return key

    @classmethod
    def release(cls, key: str) -> None:
        """Forget the object held under ``key``."""
        cls.held.pop(key, None)

    def load(self) -> None:
        """Find the held object (eval mode for modules).

        Raises:
            ConfigError: no object is held under the key in this process.
        """
        params = self.params
        assert isinstance(params, InMemoryTeacherParams)
        model = self.held.get(params.key)
        if model is None:
            raise ConfigError(
                f"{_WHERE}: no teacher object is held under key {params.key!r} in this process",
                hint="an in-memory teacher exists only in the Python process that passed it: "
                "call kdforge.distill/kdforge.resume with the teacher object, or save it "
                "(result.to_config() writes a TorchScript file) and use the checkpoint teacher",
            )
        if isinstance(model, torch.nn.Module):
            model.eval()
        self._model = model

    def predict(self, x: torch.Tensor) -> ModelOutput:
        """The object's output on one batch, as CPU float logits."""
        model = self._model
        device = _device_of(model)
        with torch.no_grad():
            batch = x.to(device)
            if _is_hf_model(model):
                pad = getattr(model.config, "pad_token_id", None)
                mask = (batch != pad).long() if pad is not None else None
                out = model(input_ids=batch, attention_mask=mask)
            else:
                out = model(batch)
        return ModelOutput(logits=_logits_of(out))

    def fingerprint(self) -> str:
        """The key: a digest of class and weights for modules."""
        params = self.params
        assert isinstance(params, InMemoryTeacherParams)
        return params.key

    def num_parameters(self) -> int:
        """Parameters of a module (0 for a plain callable)."""
        model = self._model
        if isinstance(model, torch.nn.Module):
            return sum(p.numel() for p in model.parameters())
        return 0

    def expected_num_classes(self) -> int | None:
        """``config.num_labels`` of a Hugging Face classifier, else unknown."""
        if _is_hf_model(self._model):
            labels = getattr(self._model.config, "num_labels", None)
            return int(labels) if labels else None
        return None

    def torch_module(self) -> torch.nn.Module | None:
        """The module itself (None for a plain callable)."""
        return self._model if isinstance(self._model, torch.nn.Module) else None

    def __getstate__(self) -> dict[str, Any]:
        """Refuse, with what to do, a teacher the trials could not receive.

        Only an online teacher (randomly augmented training inputs) travels to the
        trials; a model on a GPU, or one pickle cannot serialise (a lambda, a closure),
        would fail there or in Ray's object store with an obscure error.
        """
        model = getattr(self, "_model", None)
        if isinstance(model, torch.nn.Module) and any(
            t.device.type != "cpu" for t in [*model.parameters(), *model.buffers()]
        ):
            raise PluginError(
                f"{_WHERE}: the teacher must run in the trials (augmented training inputs), "
                "but its weights are on a GPU held by this process",
                hint="move it to the CPU first (teacher.cpu()); the trials put it on their "
                "own device",
            )
        # Ray's own cloudpickle (imported here: only an online teacher is ever shipped) is
        # what the object store uses; it takes lambdas and closures, not locks or files.
        from ray import cloudpickle

        try:
            cloudpickle.dumps(model)
        except Exception as exc:
            raise PluginError(
                f"{_WHERE}: the teacher must run in the trials (augmented training inputs), "
                f"but it cannot be sent to them: {type(exc).__name__}: {exc}",
                hint="drop what cannot be copied to another process (open files, locks, "
                "threads) from the model, save it as TorchScript for the checkpoint teacher, "
                "or turn augmentation off",
            ) from None
        return dict(self.__dict__)


def _device_of(model: Any) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for tensor in model.parameters():
            return tensor.device
    return torch.device("cpu")


def _is_hf_model(model: Any) -> bool:
    """A Hugging Face ``PreTrainedModel`` (duck-typed: transformers is optional)."""
    return (
        isinstance(model, torch.nn.Module)
        and hasattr(model, "config")
        and (hasattr(model, "save_pretrained"))
    )


def _logits_of(out: Any) -> torch.Tensor:
    """Logits from a tensor, a Hugging Face output (``.logits``), a tuple or a dict."""
    if hasattr(out, "logits") and out.logits is not None:
        out = out.logits
    elif isinstance(out, dict) and "logits" in out:
        out = out["logits"]
    elif isinstance(out, (tuple, list)) and out:
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise PluginError(
            f"{_WHERE}: the teacher returned a {type(out).__name__}, not logits",
            hint="wrap it in a function returning a (batch, classes) tensor of logits",
        )
    return out.detach().float().cpu()


@kdforge.hookimpl
def register_teachers(register: kdforge.Register) -> None:
    """Register the ``in_memory`` teacher."""
    register("in_memory", InMemoryTeacher)
