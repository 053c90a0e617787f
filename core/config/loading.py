"""Reading config files: YAML in, a validated model out, errors that name the key.

Errors name the key path, the bad value and what was expected, and suggest the
closest key for misspellings (``search.num_trails: unknown key (did you mean
'search.num_trials'?)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kdforge.config.schema import SearchConfig, TeacherConfig
from kdforge.errors import ConfigError, closest_match

__all__ = [
    "format_validation_error",
    "load_config",
    "load_search_config",
    "load_teacher_config",
    "validate_config",
]

_M = TypeVar("_M", bound=BaseModel)


def load_config(path: str | Path, model: type[_M], overrides: dict[str, Any] | None = None) -> _M:
    """Read a YAML file and validate it into ``model``.

    Args:
        path: The YAML file.
        model: The pydantic model to validate into.
        overrides: Dotted keys to set after reading (e.g. ``{"search.num_trials": 3}``).

    Raises:
        ConfigError: unreadable file, invalid YAML, or invalid content (naming the key).
    """
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"config file not found: {file}")
    if file.is_dir():
        raise ConfigError(f"config path is a directory, expected a YAML file: {file}")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{file}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    return validate_config(raw, model, source=str(file))


def validate_config(raw: dict[str, Any], model: type[_M], source: str = "config") -> _M:
    """Validate a mapping into ``model``, turning pydantic errors into a ConfigError."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, model, raw, source)) from None


def load_search_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """Read and validate a search config (see :func:`load_config`)."""
    return load_config(path, SearchConfig, overrides)


def load_teacher_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TeacherConfig:
    """Read and validate a teacher-training config (see :func:`load_config`)."""
    return load_config(path, TeacherConfig, overrides)


def format_validation_error(
    exc: ValidationError, model: type[BaseModel], raw: Any, source: str, prefix: str = ""
) -> str:
    """One readable line per problem: key path, bad value, expectation, suggestion.

    Args:
        exc: The pydantic error.
        model: The model validated against (for "did you mean" suggestions).
        raw: The raw input.
        source: Where the input came from (a file name), or "" for none.
        prefix: Key path of ``raw`` inside the whole config (e.g. ``student.params``).
    """
    lines = []
    by_key: dict[str, str] = {}
    for err in exc.errors():
        # Drop pydantic's union-branch labels ("float", "function-after[...]") from paths.
        parts = _clean_loc(err["loc"], raw)
        loc = [*([prefix] if prefix else []), *parts]
        key = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[1 if prefix else 0 : -1])
            suggestion = closest_match(loc[-1], allowed) if allowed else None
            msg = f"{key}: unknown key"
            if suggestion:
                msg += f" (did you mean {'.'.join([*loc[:-1], suggestion])!r}?)"
            elif allowed:
                msg += f"; allowed: {', '.join(sorted(allowed))}"
        elif kind == "missing":
            msg = f"{key}: required key is missing"
        else:
            text = err["msg"]
            if text.startswith("Value error, "):
                text = text[len("Value error, ") :]
            msg = f"{key}: {text}"
            if "input" in err and kind != "model_type":
                msg += f" (got {err['input']!r})"
        # For a union (a number or a range) keep the most specific complaint per key.
        if key in by_key and kind != "value_error":
            continue
        by_key[key] = msg
    lines = list(by_key.values())
    return (f"{source}: " if source else "") + "; ".join(lines)


def _is_branch_label(part: str) -> bool:
    return "[" in part or part in {"float", "int", "str", "bool", "list", "dict", "Range"}


def _clean_loc(loc: tuple[Any, ...], raw: Any) -> list[str]:
    """The error's key path with pydantic's union-branch labels removed.

    A part is dropped only when it looks like a branch label *and* is not a key of the
    input at that point (a user may well have written a key called ``[`` or ``float``).
    """
    parts: list[str] = []
    node = raw
    for item in loc:
        text = str(item)
        in_dict = isinstance(node, dict) and item in node
        in_list = isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node)
        if in_dict or in_list:
            parts.append(text)
            node = node[item]  # type: ignore[index]
        elif _is_branch_label(text):
            continue
        else:
            parts.append(text)
            node = None
    return parts


def _allowed_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = field.annotation
        args = getattr(current, "__args__", None)
        if args:
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            current = models[0] if models else current
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
