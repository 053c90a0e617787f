"""Request checks of the Ray Serve application (no server needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdforge.deploy.validation import BadRequest, max_body_bytes, parse_request

SHAPE = (-1, 1, 8, 8)


def _parse(body: bytes | str, max_batch_size: int = 16) -> np.ndarray:
    data = body.encode() if isinstance(body, str) else body
    return parse_request(data, input_shape=SHAPE, dtype="float32", max_batch_size=max_batch_size)


def _body(value: object, field: str = "inputs") -> str:
    return json.dumps({field: value})


def test_valid_batch_becomes_float32_array():
    rows = np.arange(2 * 64).reshape(2, 1, 8, 8)  # integers are fine numbers
    batch = _parse(_body(rows.tolist()))
    assert batch.dtype == np.float32 and batch.shape == (2, 1, 8, 8)
    np.testing.assert_array_equal(batch, rows.astype(np.float32))


def test_instances_field_is_accepted_like_mlflow():
    assert _parse(_body(np.zeros((1, 1, 8, 8)).tolist(), "instances")).shape == (1, 1, 8, 8)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ("not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        ("[1, 2]", 400, "JSON object"),
        (_body(np.zeros((1, 64)).tolist()), 400, "(batch, 1, 8, 8)"),
        (_body(np.zeros((1, 1, 8, 7)).tolist()), 400, "does not match"),
        (_body([]), 400, "does not match"),
        (_body([[[[1.0] * 8] * 8], [[[1.0] * 8] * 7]]), 400, "rectangular"),
        (_body(np.full((1, 1, 8, 8), "a").tolist()), 400, "must be numbers"),
        (_body(np.full((1, 1, 8, 8), True).tolist()), 400, "must be numbers"),
        (_body([[[[None] * 8] * 8]]), 400, "must be numbers"),
        ('{"inputs": [[[[NaN, 1, 1, 1, 1, 1, 1, 1]]]]}', 400, "NaN"),
        (json.dumps({"data": [1]}), 400, "found fields ['data']"),
        (json.dumps({"inputs": [1], "instances": [1]}), 400, "exactly one"),
        (_body(np.zeros((17, 1, 8, 8)).tolist()), 413, "max_batch_size=16"),
        (" " * (max_body_bytes(SHAPE, 16) + 1), 413, "larger than"),
    ],
)
def test_bad_requests_are_refused_with_a_message(body, status, words):
    with pytest.raises(BadRequest) as caught:
        _parse(body)
    assert caught.value.status == status
    assert words in caught.value.message
    assert caught.value.payload()["message"] == caught.value.message


def test_a_full_batch_fits_the_body_limit():
    rows = np.random.default_rng(0).random((16, 1, 8, 8)) * -1e-7  # long number strings
    assert _parse(_body(rows.tolist())).shape == (16, 1, 8, 8)
