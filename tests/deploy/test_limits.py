"""The MLflow route's request limits, without a server (the HTTP test is in test_mlflow_serve)."""

from __future__ import annotations

import asyncio
import json

import pytest

from kdforge.deploy.limits import RequestLimits, check_scoring_body
from kdforge.deploy.validation import BadRequest


@pytest.mark.parametrize(
    ("body", "word"),
    [
        (b'{"inputs": [[1.0, NaN]]}', "NaN"),
        (b'{"inputs": [[1.0, -Infinity]]}', "-Infinity"),
        (b'{"instances": [[1.0, 1e999]]}', "not finite"),
        (b'{"inputs": [[1.0, null]]}', "null"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[null]]}}', "null"),
    ],
)
def test_non_finite_inputs_are_400(body: bytes, word: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_scoring_body(body, "application/json", max_rows=10)
    assert refused.value.status == 400 and word in refused.value.message


def test_rows_over_the_limit_are_413_in_every_json_shape_and_csv() -> None:
    rows = [[0.5, 1.0]] * 11
    for document in (
        {"inputs": rows},
        {"instances": rows},
        {"dataframe_split": {"columns": ["a", "b"], "data": rows}},
        {"dataframe_records": [{"a": 1.0}] * 11},
        {"inputs": {"input": rows}},
    ):
        with pytest.raises(BadRequest, match="11 rows exceeds the limit of 10") as refused:
            check_scoring_body(json.dumps(document).encode(), "application/json", max_rows=10)
        assert refused.value.status == 413
        check_scoring_body(json.dumps(document).encode(), "application/json", max_rows=11)
    csv = b"a,b\n" + b"0.5,1.0\n" * 11
    with pytest.raises(BadRequest, match="11 rows"):
        check_scoring_body(csv, "text/csv", max_rows=10)
    with pytest.raises(BadRequest, match="NaN or infinite"):
        check_scoring_body(b"a,b\n0.5,nan\n", "text/csv", max_rows=10)
    check_scoring_body(b"not json", "application/json", max_rows=1)  # MLflow answers it


def _call(app: RequestLimits, body: bytes, path: str = "/invocations") -> tuple[int, bytes]:
    """Drive the middleware as uvicorn would: the body in 1 KB chunks."""
    chunks = [body[i : i + 1024] for i in range(0, len(body), 1024)] or [b""]
    incoming = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive():
        return incoming.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_middleware_refuses_large_bodies_and_passes_good_ones_through_whole() -> None:
    seen: list[bytes] = []

    async def inner(scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message["body"], message["more_body"]
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = RequestLimits(inner, max_body_bytes=4000, max_rows=100)
    good = json.dumps({"inputs": [[0.25] * 30] * 20}).encode()
    assert len(good) > 1024 and _call(app, good) == (200, b"ok") and seen == [good]
    status, answer = _call(app, json.dumps({"inputs": [[0.25] * 30] * 40}).encode())
    assert status == 413 and json.loads(answer)["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "--max-body-mb" in json.loads(answer)["message"]
    status, answer = _call(app, b'{"inputs": [[NaN]]}')
    assert status == 400 and json.loads(answer)["error_code"] == "BAD_REQUEST"
    assert _call(app, b'{"inputs": [[NaN]]}', path="/other") == (200, b"ok")
    assert len(seen) == 2
