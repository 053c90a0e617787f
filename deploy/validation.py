"""Checking a prediction request before it reaches the model.

The Ray Serve application speaks MLflow's scoring protocol (``POST /invocations`` with
``{"inputs": [...]}`` or ``{"instances": [...]}``, answer ``{"predictions": {OUTPUT:
[...]}}``), so a client can switch between the two servers. Every way a request can
be wrong maps to a :class:`BadRequest` with an HTTP status and a message; nothing here
imports Ray, so it is cheap to test.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = ["INPUT_FIELDS", "BadRequest", "max_body_bytes", "parse_request"]

#: JSON fields that may hold the input tensor (as in MLflow's scoring server).
INPUT_FIELDS = ("inputs", "instances")

# Upper bound on the JSON text of one number ("-0.12345678901234567," is 22 chars);
# bodies longer than this for a full batch are refused before parsing.
_MAX_CHARS_PER_VALUE = 32


class BadRequest(Exception):
    """A request the server refuses, with the HTTP status and a message for the client.

    Args:
        status: HTTP status (400 malformed, 413 too large).
        code: MLflow-style error code (e.g. ``BAD_REQUEST``).
        message: What is wrong with the request.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def payload(self) -> dict[str, str]:
        """The JSON error body (MLflow's ``error_code`` / ``message`` shape)."""
        return {"error_code": self.code, "message": self.message}


def max_body_bytes(input_shape: tuple[int, ...], max_batch_size: int) -> int:
    """The largest request body accepted for a batch of ``max_batch_size`` rows."""
    per_row = int(np.prod([d for d in input_shape[1:] if d > 0], dtype=np.int64))
    return max_batch_size * max(per_row, 1) * _MAX_CHARS_PER_VALUE + 4096


def parse_request(
    body: bytes,
    *,
    input_shape: tuple[int, ...],
    dtype: str,
    max_batch_size: int,
) -> np.ndarray:
    """Decode and check one request body; return the input batch as an array.

    Args:
        body: The raw HTTP body.
        input_shape: Expected shape with ``-1`` for free axes (the batch axis first).
        dtype: numpy dtype the model takes (e.g. ``float32``).
        max_batch_size: Largest number of rows accepted in one request.

    Raises:
        BadRequest: 413 for an oversized body or batch; 400 for non-JSON, a missing
            input field, non-numeric values, or a wrong shape.
    """
    if len(body) > max_body_bytes(input_shape, max_batch_size):
        raise BadRequest(
            413,
            "REQUEST_LIMIT_EXCEEDED",
            f"request body of {len(body):,} bytes is larger than a batch of "
            f"max_batch_size={max_batch_size} rows can be; split it into smaller requests",
        )
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(400, "BAD_REQUEST", f"the body is not valid JSON: {exc}") from None
    data = _input_field(document)
    array = _to_array(data)
    _check_shape(array, input_shape)
    if array.shape[0] > max_batch_size:
        raise BadRequest(
            413,
            "REQUEST_LIMIT_EXCEEDED",
            f"batch of {array.shape[0]} rows exceeds max_batch_size={max_batch_size}; "
            "split it into smaller requests",
        )
    return array.astype(np.dtype(dtype), copy=False)


def _input_field(document: Any) -> Any:
    if not isinstance(document, dict):
        raise BadRequest(
            400,
            "BAD_REQUEST",
            f"expected a JSON object with one of the fields {list(INPUT_FIELDS)}, "
            f"got a JSON {type(document).__name__}",
        )
    present = [name for name in INPUT_FIELDS if name in document]
    if len(present) != 1:
        found = sorted(document)
        raise BadRequest(
            400,
            "BAD_REQUEST",
            f"expected exactly one of the fields {list(INPUT_FIELDS)} holding the input "
            f"batch, found fields {found}",
        )
    return document[present[0]]


def _to_array(data: Any) -> np.ndarray:
    try:
        array = np.asarray(data)
    except ValueError as exc:
        # numpy refuses ragged nesting ("inhomogeneous shape").
        raise BadRequest(
            400, "BAD_REQUEST", f"the input is not a rectangular array: {exc}"
        ) from None
    if array.dtype.kind not in "iuf":
        kind = "text" if array.dtype.kind in "US" else array.dtype.name
        if array.dtype == object:
            kind = "mixed or null values"
        raise BadRequest(
            400,
            "BAD_REQUEST",
            f"the input must be numbers; got {kind} (dtype {array.dtype.name})",
        )
    if array.dtype.kind == "f" and not bool(np.isfinite(array).all()):
        raise BadRequest(400, "BAD_REQUEST", "the input contains NaN or infinite values")
    return array


def _check_shape(array: np.ndarray, expected: tuple[int, ...]) -> None:
    shape = array.shape
    matches = len(shape) == len(expected) and all(
        want < 0 or got == want for got, want in zip(shape, expected, strict=True)
    )
    if not matches or shape[0] == 0:
        want = "(" + ", ".join("batch" if d < 0 else str(d) for d in expected) + ")"
        raise BadRequest(
            400,
            "INVALID_PARAMETER_VALUE",
            f"input shape {tuple(shape)} does not match the model's input shape {want}"
            + (" (the batch is empty)" if matches else ""),
        )
