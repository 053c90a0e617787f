"""Reading config files: YAML in, a validated model out, errors that name the key.

Errors name the key path, the bad value and what was expected, and suggest the
closest key for misspellings (``search.num_trails: unknown key (did you mean
'search.num_trials'?)``). They name where the value came from: the file (with the line
for YAML errors), or ``--set KEY`` for a command-line override.

The YAML reader is PyYAML's safe loader with two changes: a key given twice in one
mapping is an error naming both lines (PyYAML keeps the last silently), and ``1e-3``
is a float as in YAML 1.2 (PyYAML 1.1 reads it as a string, which kdforge no longer
turns into a number: a quoted ``'64'`` for a number is refused).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from kdforge.config.schema import PluginRef, SearchConfig, TeacherConfig
from kdforge.errors import ConfigError, closest_match

__all__ = [
    "format_validation_error",
    "load_config",
    "load_search_config",
    "load_teacher_config",
    "parse_yaml",
    "validate_config",
]

_M = TypeVar("_M", bound=BaseModel)


# YAML 1.2 floats, exponent without a dot included (``1e-3``, ``-2E+4``).
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")


class _ConfigLoader(yaml.SafeLoader):
    """Safe loader: duplicate keys are errors, ``1e-3`` is a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: PyYAML reports it below
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} appears twice in one mapping (lines {first} and {line}); "
                    "keep one",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789"))


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text with kdforge's config reader.

    Args:
        text: The YAML.
        source: Where it came from (a file name, ``--set KEY``): errors start with it.

    Raises:
        ConfigError: invalid YAML or a duplicate key, naming ``source`` and the line.
    """
    loader = _ConfigLoader(text)
    loader.name = source  # marks name the source, not "<unicode string>"
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_message(exc, text, source), hint=_yaml_hint(exc, text)) from None
    finally:
        loader.dispose()


def _yaml_message(exc: yaml.YAMLError, text: str, source: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    line = ""
    if mark is not None and 0 <= mark.line < len(text.splitlines()):
        line = f": {text.splitlines()[mark.line].strip()!r}"
    detail = f"{problem} ({context})" if context else problem
    return f"{source}: invalid YAML{where}{line}: {detail}"


# ``key: {path: /data/{split}.npz}``: a brace placeholder inside a flow mapping.
_BRACE_IN_FLOW = re.compile(r"\{[^{}'\"]*:\s*[^{}'\",]*\{\w*\}")


def _yaml_hint(exc: yaml.YAMLError, text: str) -> str | None:
    mark = getattr(exc, "problem_mark", None)
    lines = text.splitlines()
    if mark is None or not 0 <= mark.line < len(lines):
        return None
    if _BRACE_IN_FLOW.search(lines[mark.line]) or (
        "{" in lines[mark.line] and "flow mapping" in str(getattr(exc, "context", ""))
    ):
        return (
            "quote the path: a value holding {split} inside {...} must be quoted, e.g. "
            'params: {path: "/data/{split}.npz"}'
        )
    return None


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
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    raw = parse_yaml(text, str(file))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{file}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    # Each problem is blamed on where its value came from: --set KEY or the file.
    blame = {dotted: f"--set {dotted}" for dotted in overrides or {}}
    try:
        config = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, model, raw, str(file), blame=blame)
        ) from None
    _record_origins(config, str(file), blame)
    return config


def _record_origins(node: BaseModel, source: str, blame: dict[str, str]) -> None:
    """Tell every plugin section where it came from, for its plugin's own checks."""
    for name in type(node).model_fields:
        value = getattr(node, name, None)
        if isinstance(value, PluginRef):
            value.set_origin(source, blame)
        if isinstance(value, BaseModel):
            _record_origins(value, source, blame)


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
    exc: ValidationError,
    model: type[BaseModel],
    raw: Any,
    source: str,
    prefix: str = "",
    blame: dict[str, str] | None = None,
) -> str:
    """One readable line per problem: key path, bad value, expectation, suggestion.

    Args:
        exc: The pydantic error.
        model: The model validated against (for "did you mean" suggestions).
        raw: The raw input.
        source: Where the input came from (a file name), or "" for none.
        prefix: Key path of ``raw`` inside the whole config (e.g. ``student.params``).
        blame: Dotted keys set elsewhere (``--set``) and the source to name for a
            problem at or below them instead of ``source``.
    """
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
            if "input" in err and kind != "model_type" and "not the string" not in text:
                msg += f" (got {err['input']!r})"
        # For a union (a number or a range) keep the most specific complaint per key.
        if key in by_key and kind != "value_error":
            continue
        by_key[key] = msg
    own: list[str] = []
    elsewhere: list[str] = []
    for key, msg in by_key.items():
        origin = _blamed(key, blame or {})
        if origin is None:
            own.append(msg)
        else:
            elsewhere.append(f"{origin}: {msg}")
    parts = ([(f"{source}: " if source else "") + "; ".join(own)] if own else []) + elsewhere
    return "; ".join(parts)


def _blamed(key: str, blame: dict[str, str]) -> str | None:
    """The override source for ``key``: the longest overridden key at or above it."""
    hits = [d for d in blame if key == d or key.startswith(d + ".")]
    return blame[max(hits, key=len)] if hits else None


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
