"""The bad requests both servers must refuse with a 4xx and a message."""

from __future__ import annotations

import json

import numpy as np


def bad_requests(good_inputs: np.ndarray) -> dict[str, bytes]:
    """Request bodies that are wrong in one way each, keyed by what is wrong."""
    rows = good_inputs[:2]
    return {
        "wrong shape": json.dumps({"inputs": rows.reshape(2, -1).tolist()}).encode(),
        "wrong dtype": json.dumps({"inputs": np.full(rows.shape, "x").tolist()}).encode(),
        "missing field": json.dumps({"data": rows.tolist()}).encode(),
        "non-JSON": b"inputs=[[1, 2, 3]",
    }


def good_body(inputs: np.ndarray) -> bytes:
    """A valid request body for ``inputs``."""
    return json.dumps({"inputs": inputs.tolist()}).encode()
